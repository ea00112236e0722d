"""Detections: the value type passed between stages, and its <loc_N> conversions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detections import LOC_BINS, Detections, DetectionsError, box_iou, dequantize, quantize

CLASSES = ("scratch", "hole", "stain", "oil spot")


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(16, 4000), h=st.integers(16, 4000),
    fx=st.tuples(st.floats(0, 1), st.floats(0, 1)), fy=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_box_to_loc_tokens_to_box_moves_each_coordinate_by_at_most_one_bin(w, h, fx, fy) -> None:
    x1, x2 = sorted(v * w for v in fx)
    y1, y2 = sorted(v * h for v in fy)
    dets = Detections.from_labels(["hole"], [[x1, y1, x2, y2]], CLASSES, (w, h))
    back = Detections.from_loc_text(dets.to_loc_text(), CLASSES, (w, h))
    bin_size = np.array([w, h, w, h]) / LOC_BINS
    assert back.labels == ["hole"]
    assert np.all(np.abs(back.xyxy[0] - dets.xyxy[0]) <= bin_size + 1e-3)


def test_quantize_clamps_to_the_bin_range_and_dequantize_returns_bin_centres() -> None:
    assert quantize([-5, 0, 999.9, 1000, 2000], 1000).tolist() == [0, 0, 999, 999, 999]
    assert dequantize([0, 999], 1000).tolist() == pytest.approx([0.5, 999.5])


def test_loc_text_parses_multi_token_labels_and_several_boxes() -> None:
    text = "<s>oil spot<loc_10><loc_20><loc_30><loc_40>hole<loc_500><loc_500><loc_600><loc_700></s>"
    dets = Detections.from_loc_text(text, CLASSES, (1000, 1000))
    assert dets.labels == ["oil spot", "hole"]
    assert dets.to_bins().tolist() == [[10, 20, 30, 40], [500, 500, 600, 700]]


def test_unknown_label_is_an_error_naming_it_unless_lenient() -> None:
    text = "dent<loc_1><loc_2><loc_3><loc_4>hole<loc_5><loc_6><loc_7><loc_8>"
    with pytest.raises(DetectionsError, match="'dent'"):
        Detections.from_loc_text(text, CLASSES, (100, 100))
    assert Detections.from_loc_text(text, CLASSES, (100, 100), strict=False).labels == ["hole"]


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
