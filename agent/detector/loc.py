"""Florence-2's `<loc_N>` dialect: boxes as text a Florence-2 model reads and writes.

Each coordinate is quantised to one of `LOC_BINS` bins across the image (bin = floor(x / size * 1000)) and read back
at the bin's centre ((bin + 0.5) * size / 1000), the convention of Florence-2's own post-processor. A round trip
therefore moves a coordinate by at most one bin width. A box is written `label<loc_x1><loc_y1><loc_x2><loc_y2>`.

`Detections` itself knows nothing of this dialect (it is one model family's wire format); the detector backends,
the training targets and the data set formats convert through the functions here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agent.detections import Detections, DetectionsError

LOC_BINS = 1000
_LOC_GROUP = re.compile(r"([^<>]+?)\s*<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>")


def quantize(coords: npt.ArrayLike, size: float, levels: int = LOC_BINS) -> npt.NDArray[np.int64]:
    """Pixel coordinates along an axis of `size` pixels -> integer bins 0..levels-1 (another dialect may have
    another number of bins: PaliGemma's 1024)."""
    bins = np.floor(np.asarray(coords, dtype=np.float64) / size * levels)
    return np.clip(bins, 0, levels - 1).astype(np.int64)


def dequantize(bins: npt.ArrayLike, size: float, levels: int = LOC_BINS) -> npt.NDArray[np.float32]:
    """Integer bins -> pixel coordinates at the centre of each bin."""
    return ((np.asarray(bins, dtype=np.float64) + 0.5) * size / levels).astype(np.float32)


def bins_to_xyxy(bins: npt.ArrayLike, image_size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """N x 4 `<loc>` bins -> N x 4 pixel boxes for a frame of (width, height)."""
    b = np.asarray(bins).reshape(-1, 4)
    w, h = image_size
    out = np.stack([dequantize(b[:, 0], w), dequantize(b[:, 1], h), dequantize(b[:, 2], w), dequantize(b[:, 3], h)], 1)
    return out.reshape(-1, 4).astype(np.float32)


def to_bins(dets: Detections) -> npt.NDArray[np.int64]:
    """The boxes of `dets` as `<loc_N>` bin numbers (N x 4)."""
    w, h = dets.image_size
    xyxy = dets.xyxy
    return np.stack(
        [quantize(xyxy[:, 0], w), quantize(xyxy[:, 1], h), quantize(xyxy[:, 2], w), quantize(xyxy[:, 3], h)],
        axis=1,
    ).reshape(-1, 4)


def to_loc_text(dets: Detections) -> str:
    """Florence target text: `label<loc_x1><loc_y1><loc_x2><loc_y2>` per box, in the stored order."""
    parts = []
    for label, row in zip(dets.labels, to_bins(dets)):
        parts.append(label + "".join(f"<loc_{int(b)}>" for b in row))
    return "".join(parts)


def from_loc_text(text: str, class_names: Sequence[str], image_size: tuple[int, int], strict: bool = True
                  ) -> Detections:
    """Parse Florence `label<loc_x1><loc_y1><loc_x2><loc_y2>...` text into `Detections` (scores 1.0).

    With `strict`, a group whose label is not a known class raises `DetectionsError`; otherwise it is dropped.
    """
    text = text.replace("<s>", "").replace("</s>", "").replace("<pad>", "")
    labels: list[str] = []
    bins: list[list[int]] = []
    for match in _LOC_GROUP.finditer(text):
        label = match.group(1).strip()
        if label not in class_names:
            if strict:
                raise DetectionsError(f"unknown class {label!r} in {text[:80]!r}; known: {list(class_names)}")
            continue
        labels.append(label)
        bins.append([int(g) for g in match.groups()[1:]])
    xyxy = bins_to_xyxy(np.asarray(bins).reshape(-1, 4), image_size)
    return Detections.from_labels(labels, xyxy, class_names, image_size)
