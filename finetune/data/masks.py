"""Instance masks in data sets: COCO `segmentation` (polygons or RLE) decoded to boolean H x W masks, and PNG mask
images (one per frame, pixel value = class number) split into instances by connected components.

Every problem is a `ValueError` whose message names the sizes or values at fault; the readers attach the location.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.masks import MaskError, decode_rle, mask_boxes

Mask = npt.NDArray[np.bool_]


def segmentation_mask(segmentation: Any, size: tuple[int, int]) -> Mask:
    """One COCO `segmentation` on an image of `size` = (width, height): a list of polygons `[x1, y1, x2, y2, ...]`
    (pixels), or an RLE `{"size": [h, w], "counts": ...}` whose size must be the image's."""
    from faster_coco_eval.core import mask as coco_mask

    width, height = size
    if isinstance(segmentation, dict):
        return decode_rle([segmentation], size)[0]
    polygons = segmentation if isinstance(segmentation, list) else None
    if not polygons or not all(_is_polygon(p) for p in polygons):
        raise MaskError(f"segmentation must be polygons [[x1, y1, x2, y2, x3, y3, ...], ...] (at least 3 points "
                        f"each) or an RLE dict, got {str(segmentation)[:80]}")
    rles = coco_mask.frPyObjects([[float(v) for v in p] for p in polygons], height, width)
    decoded = coco_mask.decode(coco_mask.merge(rles))
    return np.asarray(decoded, dtype=bool).reshape(height, width)


def _is_polygon(points: Any) -> bool:
    return (isinstance(points, list) and len(points) >= 6 and len(points) % 2 == 0
            and all(isinstance(v, int | float) for v in points))


def mask_image_instances(labels: npt.NDArray[np.integer], class_names: Sequence[str]
                         ) -> tuple[list[str], npt.NDArray[np.float32], Mask]:
    """A class-index mask image (0 = background, k = class k, 1-based; 255 = the class of a one-class list) split
    into instances: each 8-connected region of one value is one defect. Returns labels, tight boxes, masks."""
    values = sorted(int(v) for v in np.unique(labels) if v != 0)
    if len(class_names) == 1 and values == [255]:
        labels = np.where(labels == 255, 1, labels)  # a binary 0/255 mask of a one-class set
        values = [1]
    bad = [v for v in values if v > len(class_names)]
    if bad:
        raise MaskError(f"pixel value(s) {bad} name no class: values are 0 (background) or 1..{len(class_names)} "
                        f"for {list(class_names)}")
    names: list[str] = []
    masks: list[Mask] = []
    for value in values:
        count, components = cv2.connectedComponents((labels == value).astype(np.uint8), connectivity=8)
        for component in range(1, count):
            names.append(class_names[value - 1])
            masks.append(components == component)
    height, width = labels.shape[:2]
    stacked = np.asarray(masks, dtype=bool).reshape(-1, height, width)
    return names, mask_boxes(stacked), stacked
