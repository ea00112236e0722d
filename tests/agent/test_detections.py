"""Detections: the model-independent value type passed between stages (views, thresholds, serialisation)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detections import Detections, DetectionsError, box_iou

CLASSES = ("scratch", "hole", "stain", "oil spot")


def test_mismatched_lengths_and_bad_class_ids_are_rejected() -> None:
    with pytest.raises(DetectionsError, match="2 rows"):
        Detections(np.zeros((2, 4)), [0], [1.0], CLASSES, (10, 10))
    with pytest.raises(DetectionsError, match="class_id 7"):
        Detections(np.zeros((1, 4)), [7], [1.0], CLASSES, (10, 10))


def test_json_view_has_pixel_and_normalised_boxes() -> None:
    dets = Detections.from_labels(["stain"], [[10, 20, 30, 40]], CLASSES, (100, 200), score=[0.25])
    (row,) = dets.to_json()
    assert row == {"label": "stain", "score": 0.25, "box": [10.0, 20.0, 30.0, 40.0], "box_norm": [0.1, 0.1, 0.3, 0.2]}


def test_raster_order_sorts_top_to_bottom_then_left_to_right() -> None:
    dets = Detections.from_labels(["hole", "stain", "scratch"], [[50, 50, 60, 60], [5, 50, 9, 60], [70, 1, 80, 5]],
                                  CLASSES, (100, 100))
    assert dets.sorted_raster().labels == ["scratch", "stain", "hole"]


def test_mask_selection_and_supervision_view_keep_rows_aligned() -> None:
    dets = Detections.from_labels(["hole", "stain"], [[0, 0, 1, 1], [2, 2, 3, 3]], CLASSES, (10, 10), [0.9, 0.1])
    high = dets[dets.score > 0.5]
    assert high.labels == ["hole"] and len(high) == 1
    sv_dets = dets.to_supervision()
    assert list(sv_dets.data["class_name"]) == ["hole", "stain"]


def test_box_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10]])
    assert iou[0].tolist() == pytest.approx([1.0, 0.0, 1 / 3])


def test_serialisation_round_trips_every_bit_of_boxes_and_scores() -> None:
    xyxy = [[0.1234567, 1 / 3, 10.000001, 20.5], [2.0, 3.0, 4.0, 5.0]]
    dets = Detections(xyxy, [3, 0], [1 / 7, 0.99999994], CLASSES, (640, 480))
    back = Detections.deserialize(dets.serialize())
    assert back.class_names == CLASSES and back.image_size == (640, 480)
    assert np.array_equal(back.xyxy, dets.xyxy) and np.array_equal(back.score, dets.score)
    assert back.class_id.tolist() == [3, 0] and back.xyxy.dtype == np.float32
    empty = Detections.deserialize(Detections.empty(CLASSES, (8, 8)).serialize())
    assert len(empty) == 0 and empty.image_size == (8, 8)


def test_above_keeps_boxes_reaching_their_class_threshold_else_the_default() -> None:
    dets = Detections.from_labels(["hole", "stain", "scratch", "hole"], [[0, 0, 1, 1]] * 4, CLASSES, (10, 10),
                                  [0.3, 0.6, 0.5, 0.2])
    kept = dets.above({"hole": 0.3}, default=0.55)
    assert kept.labels == ["hole", "stain"] and kept.score.tolist() == pytest.approx([0.3, 0.6])
    assert dets.box_thresholds({"hole": 0.3}, default=0.55).tolist() == pytest.approx([0.3, 0.55, 0.55, 0.3])
    assert len(dets.above({}, default=0.0)) == 4


def test_above_compares_in_float32_like_the_scores() -> None:
    dets = Detections.from_labels(["hole"], [[0, 0, 1, 1]], CLASSES, (10, 10), [0.7])
    assert float(np.float32(0.7)) < 0.7  # a float64 comparison would drop this box
    assert len(dets.above({"hole": 0.7}, default=1.0)) == 1


def test_above_without_a_default_needs_every_class() -> None:
    dets = Detections.from_labels(["hole"], [[0, 0, 1, 1]], CLASSES, (10, 10), [0.9])
    with pytest.raises(KeyError, match="oil spot"):
        dets.above({"scratch": 0.5, "hole": 0.5, "stain": 0.5})
    with pytest.raises(KeyError):
        Detections.empty(CLASSES, (10, 10)).above({})
    assert len(dets.above(dict.fromkeys(CLASSES, 0.5))) == 1
