"""How the review API shows entries: list lines, the editor's detail, and the queue summary."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from agent.detections import Detections
from agent.station.review_view import entry_detail, label_boxes, list_item, queue_summary, suggestions
from tests.agent.learn.helpers import entry_with
from tests.agent.station.conftest import CLASSES, fill_queue, scratch_at


def test_a_list_line_has_the_margin_and_review_state() -> None:
    item = list_item(entry_with(7, golden=True))
    assert item == {"id": 7, "camera": "cam0", "captured_at": "2025-01-01T00:00:00.000Z", "status": "new",
                    "margin": 0.05, "suggestion_count": 1, "verified": False, "golden": True}


def test_suggestions_carry_score_and_threshold_and_labels_only_boxes() -> None:
    entry = entry_with(thresholds={"scratch": 0.4, "hole": 0.5, "stain": 0.5})
    assert suggestions(entry) == [{"label": "scratch", "score": 0.55, "threshold": 0.4,
                                   "box": [10.0, 12.0, 30.0, 40.0]}]
    labels = Detections.from_labels(["hole"], [[1.234, 2, 3, 4]], CLASSES, (64, 64))
    assert label_boxes(labels) == [{"label": "hole", "box": [1.23, 2.0, 3.0, 4.0]}] and label_boxes(None) is None


def test_the_detail_has_everything_the_editor_draws() -> None:
    reviewed = entry_with(3, status="labelled", labels=Detections.empty(CLASSES, (64, 64)), verified=True,
                          reviewer="tech", reviewed_at=datetime(2025, 2, 1, tzinfo=timezone.utc))
    detail = entry_detail(reviewed)
    assert detail["review"] == {"verified": True, "reviewer": "tech", "reviewed_at": "2025-02-01T00:00:00.000Z"}
    assert (detail["labels"], detail["image"], detail["width"]) == ([], "/api/review/entries/3/frame.png", 64)
    assert detail["class_names"] == list(CLASSES) and len(detail["suggestions"]) == 1


def test_the_summary_counts_statuses_and_both_sets(tmp_path: Path) -> None:
    queue = fill_queue(tmp_path / "q", [scratch_at(0.6), scratch_at(0.4)], golden_fraction=1.0)
    queue.set_status(1, "labelled", scratch_at(1.0), reviewer="tech")
    summary = queue_summary(queue)
    assert summary["statuses"]["labelled"] == 1 and summary["golden_fraction"] == 1.0
    assert summary["golden"]["boxes"] == {"scratch": 1, "hole": 0, "stain": 0} and summary["training"]["frames"] == 0
    queue.close()
