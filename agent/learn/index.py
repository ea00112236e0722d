"""The learning queue's SQLite index (`index.sqlite3`): one row per entry, and the mapping between rows and
`QueueEntry` values (predictions and reviewed labels are stored as `Detections.serialize` text).

Schema versions (`PRAGMA user_version`): 0 is the first release; 1 adds the review facts (`verified`, `reviewer`,
`reviewed_at`) and the manual golden toggle (`golden`: NULL = by frame hash, 1 = golden, 0 = training). Opening an
older index adds the missing columns in place. Rows `labelled` before version 1 are not known to have been looked
at by a person (an untouched export could be imported as labels), so they come out unverified.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.detections import Detections
from agent.learn.entry import QueueEntry, check_statuses
from agent.learn.split import DEFAULT_GOLDEN_FRACTION, is_golden

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ts REAL NOT NULL,
    camera TEXT NOT NULL,
    frame_id INTEGER NOT NULL,
    part_id TEXT,
    captured_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'labelled', 'rejected')),
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    dhash TEXT NOT NULL,
    file TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    detections TEXT NOT NULL,
    thresholds TEXT NOT NULL,
    labels TEXT
);
CREATE INDEX IF NOT EXISTS entries_created ON entries (created_ts);
"""
SCHEMA_VERSION = 1
# columns added after version 0: name -> definition (ALTER TABLE ADD COLUMN keeps every existing row)
_REVIEW_COLUMNS = {
    "verified": "INTEGER NOT NULL DEFAULT 0",
    "reviewer": "TEXT",
    "reviewed_at": "TEXT",
    "golden": "INTEGER",
}


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the index at `path`; rows come back as `sqlite3.Row`."""
    db = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # learning data: losing the last entry on power loss is acceptable
    db.executescript(_SCHEMA)
    migrate(db)
    return db


def migrate(db: sqlite3.Connection) -> None:
    """Bring an index of any older version up to `SCHEMA_VERSION` (idempotent, in one transaction)."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    present = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
    with db:
        for name, definition in _REVIEW_COLUMNS.items():
            if name not in present:
                db.execute(f"ALTER TABLE entries ADD COLUMN {name} {definition}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def entry_from_row(row: sqlite3.Row, frames_dir: Path, golden_fraction: float = DEFAULT_GOLDEN_FRACTION
                   ) -> QueueEntry:
    """The `QueueEntry` a row of `entries` describes; its frame lives in `frames_dir`; `golden_fraction` assigns
    the frames nobody toggled by hand (`agent.learn.split`)."""
    image_hash = int(row["dhash"], 16)
    manual = None if row["golden"] is None else bool(row["golden"])
    return QueueEntry(
        id=row["id"], created_at=datetime.fromtimestamp(row["created_ts"], timezone.utc), camera=row["camera"],
        frame_id=row["frame_id"], part_id=row["part_id"], captured_at=datetime.fromisoformat(row["captured_at"]),
        reason=row["reason"], model=row["model"], status=row["status"], width=row["width"],
        height=row["height"], dhash=image_hash, path=frames_dir / row["file"],
        bytes=row["bytes"], detections=Detections.deserialize(row["detections"]),
        thresholds=json.loads(row["thresholds"]),
        labels=None if row["labels"] is None else Detections.deserialize(row["labels"]),
        verified=bool(row["verified"]), reviewer=row["reviewer"],
        reviewed_at=None if row["reviewed_at"] is None else datetime.fromisoformat(row["reviewed_at"]),
        golden=is_golden(image_hash, manual, golden_fraction), golden_manual=manual is not None,
    )


def labels_text(labels: Detections | None) -> str | None:
    """The `labels` column for reviewed boxes (NULL when a review carries none)."""
    return None if labels is None else labels.serialize()


def filters(status: str | None = None, camera: str | None = None) -> tuple[list[str], list[Any]]:
    """WHERE clauses and their parameters selecting entries by review status and camera."""
    clauses: list[str] = []
    params: list[Any] = []
    if status is not None:
        check_statuses([status])
        clauses.append("status = ?")
        params.append(status)
    if camera is not None:
        clauses.append("camera = ?")
        params.append(camera)
    return clauses, params
