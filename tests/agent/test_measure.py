"""Sizes on the belt plane: boxes and polygons measured through a geometry, and per-class size rules."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detections import Detections
from agent.measure import Size, SizeRule, big_enough, box_polygon, box_sizes, densify, polygon_size, shoelace_area
from tests.fixtures.geometry import flat_geometry

CLASSES = ("scratch", "spot")


def test_a_box_measures_its_sides_and_area_in_mm() -> None:
    size = polygon_size(flat_geometry(0.1), box_polygon([10, 20, 40, 25]))  # 30 x 5 px at 0.1 mm/px
    assert size.length_mm == pytest.approx(3.0) and size.width_mm == pytest.approx(0.5)
    assert size.area_mm2 == pytest.approx(1.5)
    assert size.to_json() == {"size_mm": [3.0, 0.5], "area_mm2": 1.5}


def test_a_box_upright_in_the_image_keeps_its_sides_on_a_belt_turned_against_it() -> None:
    size = polygon_size(flat_geometry(0.2, rotation_deg=30.0), box_polygon([0, 0, 10, 40]))
    assert (size.length_mm, size.width_mm, size.area_mm2) == pytest.approx((8.0, 2.0, 16.0), abs=1e-4)


def test_a_diagonal_mask_outline_gives_its_own_length_where_its_box_would_give_the_box_sides() -> None:
    scratch = np.array([[0, 0], [2, -2], [42, 38], [40, 40]], dtype=float)  # a thin stroke at 45 degrees
    size = polygon_size(flat_geometry(0.1), scratch)
    assert size.length_mm == pytest.approx(np.hypot(40, 40) * 0.1, rel=1e-3)
    assert size.width_mm == pytest.approx(np.hypot(2, 2) * 0.1, rel=1e-3)
    assert size.area_mm2 == pytest.approx(shoelace_area(scratch) * 0.01, rel=1e-6)


def test_densify_keeps_the_corners_and_cuts_every_edge() -> None:
    square = box_polygon([0, 0, 4, 4])
    dense = densify(square, 4)
    assert len(dense) == 16 and np.allclose(dense[::4], square)
    assert shoelace_area(dense) == pytest.approx(16.0)


def test_polygon_needs_three_points() -> None:
    with pytest.raises(ValueError, match="at least 3 points, got 2"):
        polygon_size(flat_geometry(), [[0, 0], [1, 1]])


def test_box_sizes_follow_the_boxes() -> None:
    dets = Detections.from_labels(["scratch", "spot"], [[0, 0, 30, 2], [0, 0, 5, 5]], CLASSES, (160, 120))
    assert [s.to_json() for s in box_sizes(flat_geometry(0.1), dets)] == [
        {"size_mm": [3.0, 0.2], "area_mm2": 0.6}, {"size_mm": [0.5, 0.5], "area_mm2": 0.25}]


def test_a_rule_is_reached_by_any_one_of_its_minimums() -> None:
    rule = SizeRule(min_length_mm=2.0, min_area_mm2=0.5)
    assert rule.reached_by(Size(2.0, 0.1, 0.2))  # long enough
    assert rule.reached_by(Size(1.0, 0.6, 0.6))  # large enough
    assert not rule.reached_by(Size(1.9, 0.2, 0.38))
    assert SizeRule(min_area_mm2=0.5).to_json() == {"min_area_mm2": 0.5}


def test_big_enough_without_sizes_or_rules_lets_every_box_be_a_defect() -> None:
    dets = Detections.from_labels(["scratch", "spot"], [[0, 0, 1, 1]] * 2, CLASSES, (160, 120))
    rules = {"scratch": SizeRule(min_length_mm=2.0)}
    tiny = [Size(0.1, 0.1, 0.01)] * 2
    assert big_enough(dets, rules, None).tolist() == [True, True]  # no geometry: never pass on a missing measurement
    assert big_enough(dets, {}, tiny).tolist() == [True, True]
    assert big_enough(dets, rules, tiny).tolist() == [False, True]  # spot has no rule
    with pytest.raises(ValueError, match="1 sizes for 2 boxes"):
        big_enough(dets, rules, tiny[:1])
