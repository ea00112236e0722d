"""Recalibration runs as files in the state dir: the contract between a run (its own process) and its watchers.

A run lives in `StateDir.recalibration / <run_id>/`. While it works it keeps `progress.json` current (replaced
atomically, so a reader never sees half a file); when it ends it writes `report.json` (and `report.md`). The
station reads these files to show runs live and afterwards; it never imports the training code, and a run never
needs the station. `RUN_ID` format: `YYYYmmddTHHMMSSffffffZ` (UTC), so names sort by start time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

PROGRESS_FILE = "progress.json"
REPORT_FILE = "report.json"
RUN_ID = re.compile(r"^\d{8}T\d{12}Z$")
RunState = Literal["running", "finished", "failed", "cancelled"]


def new_run_id(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")


@dataclass
class RunProgress:
    """Where a run is: its stage (a step name of the run), training step/total, last loss, ETA, and its pid."""

    run_id: str
    state: RunState = "running"
    stage: str = "starting"
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    eta_s: float | None = None
    pid: int = field(default_factory=os.getpid)
    updated: str = ""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunProgress:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def write_progress(run_dir: Path, progress: RunProgress) -> None:
    """Replace `progress.json` atomically (write a sibling, then rename)."""
    progress.updated = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{PROGRESS_FILE}.tmp"
    tmp.write_text(json.dumps(progress.to_json()))
    tmp.replace(run_dir / PROGRESS_FILE)


def read_progress(run_dir: Path) -> RunProgress | None:
    """The run's last progress, or None when it has none (yet) or the file does not parse."""
    try:
        return RunProgress.from_json(json.loads((run_dir / PROGRESS_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def read_report(run_dir: Path) -> dict[str, Any] | None:
    """The finished run's report.json, or None while it runs (or when it is unreadable)."""
    try:
        data = json.loads((run_dir / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_dirs(recalibration_dir: Path) -> list[Path]:
    """Every run folder, newest first (run ids sort by start time)."""
    if not recalibration_dir.is_dir():
        return []
    return sorted((p for p in recalibration_dir.iterdir() if p.is_dir() and RUN_ID.match(p.name)), reverse=True)


def write_recalibration_request(path: Path, reason: str | None, via: str) -> Path:
    """The request file the recalibration unit's systemd .path watches (written whole, then renamed into place)."""
    request = {"reason": reason, "requested_at": datetime.now(timezone.utc).isoformat(), "via": via}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(request))
    tmp.replace(path)
    return path
