"""Queue value types: statuses are checked by name; an entry's JSON view is what the CLI prints."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.detections import Detections
from agent.learn.entry import OfferResult, QueueEntry, QueueError, ReviewRecord, check_statuses
from tests.agent.learn.helpers import entry_with, unsure


def test_unknown_statuses_are_named() -> None:
    check_statuses(["new", "labelled", "rejected"])
    with pytest.raises(QueueError, match="'done'"):
        check_statuses(["new", "done", "also-bad"])


def test_entry_json_has_hex_hash_iso_times_and_rounded_boxes() -> None:
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    entry = QueueEntry(7, when, "cam0", 3, None, when, "threshold-band", "m@1", "new", 64, 64, 255,
                       Path("frames/000000007.png"), 100, unsure(0.55, (10.123, 12, 30, 40)), {"scratch": 0.5})
    data = entry.to_json()
    assert data["dhash"] == "00000000000000ff" and data["created_at"] == "2025-01-01T00:00:00+00:00"
    assert data["predictions"][0]["box"] == [10.12, 12.0, 30.0, 40.0] and data["labels"] is None


def test_entry_json_carries_the_review_facts() -> None:
    fresh = entry_with().to_json()
    assert (fresh["verified"], fresh["reviewer"], fresh["reviewed_at"], fresh["golden"]) == (False, None, None, False)
    reviewed = entry_with(status="labelled", labels=unsure(1.0), verified=True, reviewer="tech",
                          reviewed_at=datetime(2025, 3, 4, 5, 6, 7, 891000, tzinfo=timezone.utc), golden=True,
                          golden_manual=True).to_json()
    assert (reviewed["verified"], reviewed["reviewer"], reviewed["reviewed_at"]) == (
        True, "tech", "2025-03-04T05:06:07.891Z")
    assert (reviewed["golden"], reviewed["golden_manual"]) == (True, True)


def test_label_boxes_are_the_reviewed_ones_else_the_predictions_over_threshold() -> None:
    two = Detections.from_labels(["scratch", "hole"], [[1, 1, 9, 9], [20, 20, 30, 30]], ("scratch", "hole", "stain"),
                                 (64, 64), score=[0.7, 0.3])
    assert entry_with(predictions=two, status="labelled").label_boxes().labels == ["scratch"]
    assert entry_with(predictions=two, labels=Detections.empty(two.class_names, (64, 64))).label_boxes().labels == []
    assert (entry_with().split, entry_with(golden=True).split) == ("training", "golden")


def test_a_review_record_is_verified_only_with_a_reviewer() -> None:
    assert ReviewRecord(1, "labelled", None, "tech").verified
    assert not ReviewRecord(1, "labelled").verified


def test_an_offer_result_is_true_only_with_an_entry() -> None:
    assert not OfferResult(None, "quota")
