"""An imported file that still holds what the export wrote is told apart from one a reviewer changed."""

from __future__ import annotations

from agent.detections import Detections
from agent.detector.loc import from_loc_text, to_loc_text
from agent.learn.untouched import exported_variants, is_untouched, same_boxes
from tests.agent.learn.helpers import CLASSES


def predictions() -> Detections:
    boxes = [[10.3, 12.7, 30.1, 40.9], [40.0, 5.0, 60.0, 20.0]]
    return Detections.from_labels(["scratch", "hole"], boxes, CLASSES, (640, 480), score=[0.55, 0.2])


def test_a_jsonl_round_trip_is_still_the_same_boxes() -> None:
    shown = predictions()
    back = from_loc_text(to_loc_text(shown.sorted_raster()), CLASSES, (640, 480))
    assert same_boxes(back, shown) and is_untouched(back, shown)


def test_a_moved_box_another_class_or_a_missing_box_is_a_change() -> None:
    shown = predictions()
    moved_boxes = [[14.0, 12.7, 34.0, 40.9], [40.0, 5.0, 60.0, 20.0]]
    moved = Detections.from_labels(["scratch", "hole"], moved_boxes, CLASSES, (640, 480))
    relabelled = Detections.from_labels(["stain", "hole"], shown.xyxy, CLASSES, (640, 480))
    assert not is_untouched(moved, shown) and not is_untouched(relabelled, shown)
    assert not is_untouched(Detections.empty(CLASSES, (640, 480)), shown)  # "no defect" is a reviewer's decision
    assert not is_untouched(shown[[1]], shown)  # the weaker box kept, the stronger dropped: a reviewer did that


def test_an_export_with_min_score_left_untouched_is_recognised() -> None:
    shown = predictions()
    assert [len(v) for v in exported_variants(shown)] == [1, 2]
    assert is_untouched(shown[[0]], shown)  # what `--min-score 0.3` wrote
    empty = Detections.empty(CLASSES, (640, 480))
    assert is_untouched(empty, empty)
