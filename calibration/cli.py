"""`edge-inspect recalibrate`: one recalibration run against the daemon's config (see `calibration.run`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


class Notify(str, Enum):
    mqtt = "mqtt"
    none = "none"


def recalibrate_command(
    config: Path = typer.Option(..., "--config", "-c", help="the daemon's config file (model, state_dir, MQTT)"),
    golden: Path | None = typer.Option(None, "--golden", help="golden set (Florence JSONL); default from config"),
    target_precision: float | None = typer.Option(
        None, "--target-precision", min=0.01, max=1.0, help="fit per-class thresholds to this precision"),
    max_minutes: float | None = typer.Option(None, "--max-minutes", min=0.1, help="training time budget"),
    notify: Notify | None = typer.Option(
        None, "--notify", help="after a promotion: mqtt (publish cmd/reload) or none (systemd reloads the daemon)"),
    work_dir: Path | None = typer.Option(None, "--work-dir", help="where the run folder goes"),
) -> None:
    """Fine-tune from the labelled queue, evaluate against the golden set, promote only if the gate passes.

    Exit codes: 0 promoted, 1 failed (the current model keeps serving), 2 bad config, 3 rejected by the gate,
    4 nothing to learn (too few labelled frames).
    """
    from agent.config import ConfigError, load_settings
    from calibration.run import RunOptions, recalibrate

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    options = RunOptions(golden_set=golden, target_precision=target_precision, max_minutes=max_minutes,
                         notify=notify.value if notify else None, work_dir=work_dir)
    report = recalibrate(settings, options)
    stream_err = int(report.outcome) != 0
    typer.echo(f"{report.outcome.name.lower()}: {report.reason}", err=stream_err)
    typer.echo(f"report: {report.run_dir / 'report.md'}", err=stream_err)
    raise typer.Exit(code=int(report.outcome))
