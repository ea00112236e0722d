"""Sizes in millimetres on the belt plane, and the per-class size rules that say whether a box is big enough to be a
defect ("a scratch longer than 2 mm", "a spot larger than 0.5 mm^2").

Everything is measured on a polygon, so a box (its four corners, `box_polygon`) and an instance mask's outline are
measured alike: the outline is mapped to mm (`PlaneMap`, e.g. `agent.geometry.CameraGeometry`), its area is the
shoelace area there, and its length and width are the sides of the smallest rectangle around it there (so a diagonal
scratch's mask gives its own length; its box gives the box's sides).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from agent.detections import Detections

EDGE_STEPS = 8  # each edge is sampled this often before mapping: lens distortion bends straight pixel edges on the belt


class PlaneMap(Protocol):
    """Pixels of a frame -> mm on the belt plane (N x 2 -> N x 2)."""

    def to_mm(self, points_px: npt.ArrayLike) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True)
class Size:
    """A shape's size on the belt plane."""

    length_mm: float  # the longer side of the smallest rectangle around it
    width_mm: float  # the shorter side
    area_mm2: float

    def to_json(self) -> dict[str, Any]:
        """The result message's fields: `size_mm` [length, width] and `area_mm2`, to the micrometre."""
        return {"size_mm": [round(self.length_mm, 3), round(self.width_mm, 3)], "area_mm2": round(self.area_mm2, 3)}


def box_polygon(xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """A box's corners, clockwise in image coordinates from its top-left: the polygon it is measured as."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy).reshape(4))
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])


def densify(polygon: npt.ArrayLike, steps: int = EDGE_STEPS) -> npt.NDArray[np.float64]:
    """The polygon with each edge cut into `steps` pieces (the closing edge included)."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    following = np.roll(points, -1, axis=0)
    fractions = np.arange(steps, dtype=np.float64) / steps
    return (points[:, None, :] + fractions[None, :, None] * (following - points)[:, None, :]).reshape(-1, 2)


def shoelace_area(points: npt.ArrayLike) -> float:
    """Area enclosed by a simple polygon (any orientation)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_size(plane: PlaneMap, polygon_px: npt.ArrayLike) -> Size:
    """The size on the belt plane of a polygon given in frame pixels (a box's corners, a mask's outline)."""
    outline = np.asarray(polygon_px, dtype=np.float64).reshape(-1, 2)
    if len(outline) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(outline)}")
    on_belt = plane.to_mm(densify(outline))
    (_, _), (side_a, side_b), _ = cv2.minAreaRect(on_belt.astype(np.float32))
    return Size(max(side_a, side_b), min(side_a, side_b), shoelace_area(on_belt))


def box_sizes(plane: PlaneMap, dets: Detections) -> list[Size]:
    """Each box's size on the belt plane, in the order of `dets`."""
    return [polygon_size(plane, box_polygon(box)) for box in dets.xyxy]


@dataclass(frozen=True)
class SizeRule:
    """A class's minimum size: a box reaching at least one of the minimums given is big enough to be a defect."""

    min_length_mm: float | None = None
    min_area_mm2: float | None = None

    def reached_by(self, size: Size) -> bool:
        length_ok = self.min_length_mm is not None and size.length_mm >= self.min_length_mm
        area_ok = self.min_area_mm2 is not None and size.area_mm2 >= self.min_area_mm2
        return length_ok or area_ok or (self.min_length_mm is None and self.min_area_mm2 is None)

    def to_json(self) -> dict[str, float]:
        """The minimums that are set, as configured."""
        limits = {"min_length_mm": self.min_length_mm, "min_area_mm2": self.min_area_mm2}
        return {key: value for key, value in limits.items() if value is not None}


def big_enough(dets: Detections, rules: Mapping[str, SizeRule], sizes: Sequence[Size] | None
               ) -> npt.NDArray[np.bool_]:
    """Per box: may it be a defect by its size? True without a rule for its class, and True without sizes (no
    geometry for the camera): a part is never passed on a measurement that was not made."""
    if sizes is None or not rules:
        return np.ones(len(dets), dtype=bool)
    if len(sizes) != len(dets):
        raise ValueError(f"{len(sizes)} sizes for {len(dets)} boxes")
    return np.array([label not in rules or rules[label].reached_by(size)
                     for label, size in zip(dets.labels, sizes, strict=True)], dtype=bool)
