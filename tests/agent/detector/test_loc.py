"""Florence-2's `<loc_N>` dialect: quantisation, parsing and writing box text, and the box -> loc -> box round trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.detections import Detections, DetectionsError
from agent.detector.loc import LOC_BINS, bins_to_xyxy, dequantize, from_loc_text, quantize, to_bins, to_loc_text

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
    back = from_loc_text(to_loc_text(dets), CLASSES, (w, h))
    bin_size = np.array([w, h, w, h]) / LOC_BINS
    assert back.labels == ["hole"]
    assert np.all(np.abs(back.xyxy[0] - dets.xyxy[0]) <= bin_size + 1e-3)


def test_quantize_clamps_to_the_bin_range_and_dequantize_returns_bin_centres() -> None:
    assert quantize([-5, 0, 999.9, 1000, 2000], 1000).tolist() == [0, 0, 999, 999, 999]
    assert dequantize([0, 999], 1000).tolist() == pytest.approx([0.5, 999.5])


def test_loc_text_parses_multi_token_labels_and_several_boxes() -> None:
    text = "<s>oil spot<loc_10><loc_20><loc_30><loc_40>hole<loc_500><loc_500><loc_600><loc_700></s>"
    dets = from_loc_text(text, CLASSES, (1000, 1000))
    assert dets.labels == ["oil spot", "hole"]
    assert to_bins(dets).tolist() == [[10, 20, 30, 40], [500, 500, 600, 700]]


def test_unknown_label_is_an_error_naming_it_unless_lenient() -> None:
    text = "dent<loc_1><loc_2><loc_3><loc_4>hole<loc_5><loc_6><loc_7><loc_8>"
    with pytest.raises(DetectionsError, match="'dent'"):
        from_loc_text(text, CLASSES, (100, 100))
    assert from_loc_text(text, CLASSES, (100, 100), strict=False).labels == ["hole"]


def test_loc_text_keeps_the_stored_order_and_bins_map_to_bin_centres() -> None:
    dets = Detections.from_labels(["stain", "hole"], [[50, 50, 60, 60], [0, 0, 10, 10]], CLASSES, (100, 200))
    assert to_loc_text(dets) == "stain<loc_500><loc_250><loc_600><loc_300>hole<loc_0><loc_0><loc_100><loc_50>"
    assert bins_to_xyxy([[0, 0, 999, 999]], (100, 200)).tolist() == [[pytest.approx(0.05), pytest.approx(0.1),
                                                                       pytest.approx(99.95), pytest.approx(199.9)]]


def test_no_boxes_write_empty_text_and_parse_back_empty() -> None:
    empty = Detections.empty(CLASSES, (64, 64))
    assert to_loc_text(empty) == "" and to_bins(empty).shape == (0, 4)
    assert len(from_loc_text("<s></s>", CLASSES, (64, 64))) == 0
