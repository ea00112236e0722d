"""`edge-inspect queue ...`: inspect, export and re-import (after review) the low-confidence learning queue."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from agent.learn.queue import LearningQueue

queue_app = typer.Typer(no_args_is_help=True, help="The low-confidence learning queue.")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Format(str, Enum):
    coco = "coco"
    jsonl = "jsonl"


class Status(str, Enum):
    new = "new"
    labelled = "labelled"
    rejected = "rejected"


StateDirOption = typer.Option(
    None, "--state-dir", envvar="EDGE_INSPECT_STATE_DIR", help="State directory (default: from --config, else ./state)"
)
ConfigOption = typer.Option(None, "--config", "-c", help="Daemon config file whose state_dir to use")


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `12h`, `7d`, `2w` -> timedelta; BadParameter naming the text otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 30m, 12h, 7d or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def resolve_state_dir(state_dir: Path | None, config: Path | None) -> Path:
    if state_dir is not None:
        return state_dir
    if config is not None:
        from agent.config import ConfigError, load_settings

        try:
            return load_settings(config).state_dir
        except ConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="--config") from None
    return Path("./state")


@contextmanager
def _queue(state_dir: Path | None, config: Path | None) -> Iterator[LearningQueue]:
    from agent.config import QueueConfig
    from agent.learn.queue import LearningQueue
    from agent.statedir import StateDir

    state = StateDir(resolve_state_dir(state_dir, config))
    directory = state.queue
    if not state.queue_index.is_file():
        typer.echo(f"error: no learning queue at {directory} (wrong --state-dir?)", err=True)
        raise typer.Exit(code=1)
    queue = LearningQueue(directory, QueueConfig())
    try:
        yield queue
    finally:
        queue.close()


@queue_app.command("list")
def list_entries(
    status: Status | None = typer.Option(None, "--status", help="Only entries with this review status"),
    camera: str | None = typer.Option(None, "--camera", help="Only entries from this camera"),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many (oldest first)"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table"),
    state_dir: Path | None = StateDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """List queued frames, oldest first."""
    with _queue(state_dir, config) as queue:
        entries = queue.list(status=status.value if status else None, camera=camera, limit=limit)
    if as_json:
        for entry in entries:
            typer.echo(json.dumps({k: v for k, v in entry.to_json().items() if k not in ("predictions", "labels")}))
        return
    table = Table("id", "created (UTC)", "camera", "frame", "part", "status", "boxes", "reason")
    for entry in entries:
        table.add_row(str(entry.id), entry.created_at.strftime("%Y-%m-%d %H:%M:%S"), entry.camera,
                      str(entry.frame_id), entry.part_id or "-", entry.status, str(len(entry.detections)),
                      entry.reason)
    Console().print(table)
    typer.echo(f"{len(entries)} entries")


@queue_app.command("show")
def show(
    entry_id: int = typer.Argument(..., help="Entry id (see `queue list`)"),
    state_dir: Path | None = StateDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Print one entry (metadata, predictions, frame path) as JSON."""
    from agent.learn.entry import QueueError

    with _queue(state_dir, config) as queue:
        try:
            entry = queue.get(entry_id)
        except QueueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
    typer.echo(json.dumps(entry.to_json(), indent=2))


@queue_app.command("export")
def export(
    out: Path = typer.Argument(..., help="Output directory, or the annotation file (*.json / *.jsonl)"),
    format: Format = typer.Option(..., "--format", "-f", help="coco (annotations.json) or jsonl (Florence <OD>)"),
    status: list[Status] = typer.Option(
        [Status.new, Status.labelled], "--status", help="Statuses to export (repeatable)"
    ),
    min_score: float = typer.Option(0.0, "--min-score", min=0.0, max=1.0, help="Leave out boxes scoring below this"),
    state_dir: Path | None = StateDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Export queued frames with their predictions as pre-labels (reviewed labels where present)."""
    with _queue(state_dir, config) as queue:
        target = queue.export(out, format.value, [s.value for s in status], min_score)
    typer.echo(f"wrote {target}")


@queue_app.command("import")
def import_review(
    file: Path = typer.Argument(..., help="Reviewed annotations: COCO annotations.json or Florence *.jsonl"),
    format: Format | None = typer.Option(None, "--format", "-f", help="coco or jsonl (default: from the suffix)"),
    state_dir: Path | None = StateDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Mark frames labelled with the reviewed boxes (or rejected); frames not in the file, or with the exported
    boxes untouched, stay as they are (unverified)."""
    from agent.learn.review import ReviewError, apply_review, read_review

    fmt = format.value if format else ("jsonl" if file.suffix == ".jsonl" else "coco")
    with _queue(state_dir, config) as queue:
        try:
            outcome = apply_review(queue, read_review(file, fmt), file)
        except (ReviewError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
    typer.echo(f"imported {file}: {len(outcome.labelled)} labelled, {len(outcome.rejected)} rejected")
    if outcome.untouched:
        ids = ", ".join(str(i) for i in outcome.untouched)
        typer.echo(f"{len(outcome.untouched)} frame(s) NOT labelled, left unverified: their boxes are still what the "
                   f"export wrote (the model's suggestions), so nothing says a person checked them (entries {ids}); "
                   "change them in the file or review them in the station")


@queue_app.command("purge")
def purge(
    all_entries: bool = typer.Option(False, "--all", help="Delete every entry"),
    older_than: str | None = typer.Option(None, "--older-than", help="Delete entries older than e.g. 7d, 12h"),
    status: Status | None = typer.Option(None, "--status", help="Only entries with this review status"),
    state_dir: Path | None = StateDirOption,
    config: Path | None = ConfigOption,
) -> None:
    """Delete entries (frames and index rows)."""
    if not all_entries and older_than is None and status is None:
        raise typer.BadParameter("say what to purge: --all, --older-than DURATION and/or --status")
    age = parse_duration(older_than) if older_than is not None else None
    with _queue(state_dir, config) as queue:
        removed = queue.purge(all=all_entries, older_than=age, status=status.value if status else None)
    typer.echo(f"purged {removed} entries")
