"""`edge-inspect recalibrate`: one recalibration run against the daemon's config (see `calibration.run`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer


def check_run_id(value: str | None) -> str | None:
    """A run id names a folder: only the `agent.runs` format (`YYYYmmddTHHMMSSffffffZ`), never a path."""
    from agent.runs import RUN_ID, new_run_id

    if value is not None and not RUN_ID.match(value):
        raise typer.BadParameter(f"{value!r} is not a run id; expected the format of {new_run_id()!r}")
    return value


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
    run_id: str | None = typer.Option(
        None, "--run-id", callback=check_run_id,
        help="the run's id, so a caller knows its folder ({state_dir}/recalibration/ID) in advance; default: new"),
    promote: bool = typer.Option(
        True, "--promote/--no-promote", help="--no-promote: a candidate that passes the gate is stored, not made "
        "current (exit 7); a person promotes it (the station does this)"),
) -> None:
    """Fine-tune from the verified queue frames, evaluate against the golden set, promote only a real improvement.

    Exit codes: 0 promoted, 1 failed (the current model keeps serving), 2 bad config or option, 3 rejected by the
    gate, 4 nothing to learn (too few verified training frames), 5 golden set too small (a class has fewer golden
    boxes than recalibration.min_golden_per_class), 6 cancelled (SIGTERM; nothing promoted), 7 passed the gate and
    stored but not promoted (--no-promote).
    Progress: {run folder}/progress.json; the result: report.json and report.md there.
    """
    from agent.config import ConfigError, load_settings
    from calibration.run import RunOptions, recalibrate

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    options = RunOptions(golden_set=golden, target_precision=target_precision, max_minutes=max_minutes,
                         notify=notify.value if notify else None, work_dir=work_dir, run_id=run_id, promote=promote)
    report = recalibrate(settings, options)
    stream_err = int(report.outcome) not in (0, 7)
    typer.echo(f"{report.outcome.name.lower()}: {report.reason}", err=stream_err)
    typer.echo(f"report: {report.run_dir / 'report.md'}", err=stream_err)
    raise typer.Exit(code=int(report.outcome))
