"""What makes a set of ChArUco images unusable, said so that a technician can fix it: too few corners (every image
with its count), images of different sizes, a board that does not match the print (with a hint which option)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.geometry import BoardSpec

LISTED_PER_SIZE = 5  # names shown per image size when sizes are mixed
MIN_PROBE_MARKERS = 4  # fewer markers than this may be false detections in the texture of a scene


class CalibrationError(ValueError):
    """Images or board parameters that cannot give a geometry; the message names the images and what to change."""


@dataclass(frozen=True)
class View:
    """The board as found in one image."""

    name: str
    size: tuple[int, int]  # width, height
    corners: int  # ChArUco corners found
    markers: int  # ArUco markers of the dictionary found (of this board or not)
    top_marker: int  # highest marker id found, -1 for none
    collinear: bool = False  # all corners on one line: no use for a fit
    object_points: npt.NDArray[np.float32] | None = None  # N x 3, mm on the board
    image_points: npt.NDArray[np.float32] | None = None  # N x 2, pixels

    def usable(self, min_corners: int) -> bool:
        return self.corners >= min_corners and not self.collinear and self.object_points is not None

    def points(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Its corners on the board (mm) and in the image (px); only a view with corners has them."""
        if self.object_points is None or self.image_points is None:
            raise CalibrationError(f"{self.name}: no ChArUco corners")
        return self.object_points, self.image_points


def same_size(views: Sequence[View]) -> tuple[int, int]:
    """The one size all images share; mixed sizes are an error listing each size with its images."""
    by_size: dict[tuple[int, int], list[str]] = defaultdict(list)
    for view in views:
        by_size[view.size].append(view.name)
    if len(by_size) == 1:
        return next(iter(by_size))
    groups = [f"  {w}x{h}: {', '.join(names[:LISTED_PER_SIZE])}"
              + (f" and {len(names) - LISTED_PER_SIZE} more" if len(names) > LISTED_PER_SIZE else "")
              for (w, h), names in sorted(by_size.items(), key=lambda item: -len(item[1]))]
    raise CalibrationError("the images differ in size; all of them (the belt image too) must come from this camera "
                           "at the resolution it inspects at:\n" + "\n".join(groups))


def corner_problems(views: Sequence[View], belt: View, min_corners: int, min_images: int) -> list[str]:
    """Why these views cannot calibrate (too few usable views, a belt image without enough corners), one line each
    with every image and its corner count; empty when they can."""
    usable = [v for v in views if v.usable(min_corners)]
    lines: list[str] = []
    if len(usable) < min_images:
        lines.append(f"only {len(usable)} of {len(views)} calibration images show at least {min_corners} ChArUco "
                     f"corners; {min_images} are needed:")
        lines += [f"  {v.name}: {v.corners} corners" + (" (all on one line)" if v.collinear else "") for v in views]
    if not belt.usable(min_corners):
        lines.append(f"the belt image {belt.name} shows {belt.corners} ChArUco corners"
                     + (" (all on one line)" if belt.collinear else "") + f"; {min_corners} are needed")
    return lines


def board_hint(views: Sequence[View], spec: BoardSpec, probe: Mapping[str, int], probed: str) -> str:
    """Which board option probably disagrees with the printed board, judged from the markers that were found and
    from `probe` (markers found in the image `probed` with other dictionaries, the given one included)."""
    best = max(probe, key=lambda name: probe[name], default=spec.dictionary)
    if probe.get(best, 0) >= MIN_PROBE_MARKERS and probe[best] > probe.get(spec.dictionary, 0):
        family = best.removesuffix("_1000") + "_*" if best.endswith("_1000") else best
        return (f"hint: {probed} shows {probe[best]} markers of {family} but {probe.get(spec.dictionary, 0)} of "
                f"{spec.dictionary}: give the board's dictionary with --dictionary (board generators print it)")
    board_markers = spec.squares_x * spec.squares_y // 2
    top = max((v.top_marker for v in views), default=-1)
    if top >= board_markers:
        return (f"hint: marker ids up to {top} were seen, but a {spec.squares_x}x{spec.squares_y} board has ids "
                f"0..{board_markers - 1}: the printed board has more squares than --squares says")
    if all(v.markers == 0 for v in views):
        return (f"hint: no image shows a single {spec.dictionary} marker: check --dictionary (board generators print "
                "it on the board) and that the images are sharp and evenly lit")
    confused = [v.name for v in views if v.markers >= MIN_PROBE_MARKERS and v.corners == 0]
    if confused:
        return (f"hint: {len(confused)} images show {spec.dictionary} markers but no ChArUco corners: --squares "
                f"{spec.squares_x}x{spec.squares_y} (squares across x down) or --legacy-pattern does not match the "
                "printed board")
    return "hint: show the whole board, sharp, in more images (tilted up to about 45 degrees, near the image corners)"
