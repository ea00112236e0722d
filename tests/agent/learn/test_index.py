"""The queue's SQLite index: rows map to entries losslessly; filters validate the status they select by."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.learn.entry import QueueError
from agent.learn.index import SCHEMA_VERSION, connect, entry_from_row, filters, labels_text
from agent.learn.queue import LearningQueue
from tests.agent.learn.helpers import config, unsure


def test_a_row_round_trips_predictions_and_reviewed_labels(tmp_path: Path) -> None:
    db = connect(tmp_path / "index.sqlite3")
    predictions, labels = unsure(0.5512345), unsure(1.0, (1.25, 2.5, 3.75, 5.0))
    db.execute(
        "INSERT INTO entries (created_ts, camera, frame_id, part_id, captured_at, reason, model, width, height, "
        "dhash, file, bytes, detections, thresholds, labels) VALUES (0, 'cam0', 1, NULL, "
        "'2025-01-01T00:00:00+00:00', 'r', 'm', 64, 64, '00ff', 'a.png', 10, ?, '{\"scratch\": 0.5}', ?)",
        (predictions.serialize(), labels_text(labels)),
    )
    entry = entry_from_row(db.execute("SELECT * FROM entries").fetchone(), tmp_path / "frames")
    assert entry.path == tmp_path / "frames" / "a.png" and entry.dhash == 255 and entry.status == "new"
    assert np.array_equal(entry.detections.score, predictions.score)
    assert entry.labels is not None and np.array_equal(entry.labels.xyxy, labels.xyxy)
    assert entry.thresholds == {"scratch": 0.5} and labels_text(None) is None
    db.close()


def test_filters_select_by_status_and_camera_and_name_bad_statuses() -> None:
    assert filters() == ([], [])
    assert filters(status="new", camera="cam1") == (["status = ?", "camera = ?"], ["new", "cam1"])
    with pytest.raises(QueueError, match="'done'"):
        filters(status="done")


# the index as the first release created it (schema version 0), to prove old queues keep opening
OLD_SCHEMA = """
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


def old_index(path: Path) -> None:
    """A version-0 index with a `new` and a `labelled` entry."""
    db = sqlite3.connect(str(path))
    db.executescript(OLD_SCHEMA)
    for status, labels in (("new", None), ("labelled", unsure(1.0).serialize())):
        db.execute(
            "INSERT INTO entries (created_ts, camera, frame_id, part_id, captured_at, reason, model, status, width, "
            "height, dhash, file, bytes, detections, thresholds, labels) VALUES (0, 'cam0', 1, NULL, "
            "'2025-01-01T00:00:00+00:00', 'r', 'm', ?, 64, 64, '00ff', 'a.png', 10, ?, '{\"scratch\": 0.5}', ?)",
            (status, unsure().serialize(), labels))
    db.commit()
    db.close()


def test_an_old_index_gains_the_review_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    old_index(tmp_path / "index.sqlite3")
    db = connect(tmp_path / "index.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    fresh, labelled = (entry_from_row(row, tmp_path) for row in db.execute("SELECT * FROM entries ORDER BY id"))
    assert (fresh.status, labelled.status) == ("new", "labelled")
    assert labelled.labels is not None and labelled.labels.labels == ["scratch"]
    # nobody can tell whether an old label was a person's or the model's untouched guess: unverified
    assert (labelled.verified, labelled.reviewer, labelled.reviewed_at, labelled.golden_manual) == (
        False, None, None, False)
    db.close()
    connect(tmp_path / "index.sqlite3").close()  # migrating twice is harmless


def test_a_queue_over_an_old_index_records_reviews(tmp_path: Path) -> None:
    (tmp_path / "q").mkdir()
    old_index(tmp_path / "q" / "index.sqlite3")
    queue = LearningQueue(tmp_path / "q", config())
    assert [e.status for e in queue.list()] == ["new", "labelled"] and queue.verified() == []
    reviewed = queue.set_status(2, "labelled", unsure(1.0), reviewer="tech")
    assert reviewed.verified and [e.id for e in queue.verified()] == [2]
    queue.close()
