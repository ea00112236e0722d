"""Instance masks as the rest of the system sees them: COCO RLE on disk, outline polygons in messages.

A mask is a boolean H x W array of one instance on its frame. `encode_rle` / `decode_rle` are COCO's compressed RLE
(through faster-coco-eval's pycocotools-compatible `mask` module), lossless and compact for the blobs defects are;
`polygons` gives the outer outlines a PLC or HMI can draw (OpenCV contours simplified to within `POLYGON_TOLERANCE_PX`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

POLYGON_TOLERANCE_PX = 1.0  # outlines may cut corners by up to a pixel; `area_px` is counted on the mask itself
Masks = npt.NDArray[np.bool_]


class MaskError(ValueError):
    """A mask or RLE that does not fit its frame; the message names the sizes or the bad value."""


def empty_masks(count: int, height: int, width: int) -> Masks:
    return np.zeros((count, height, width), dtype=bool)


def check_masks(masks: npt.ArrayLike, count: int, image_size: tuple[int, int]) -> Masks:
    """`masks` as a boolean N x H x W array for `count` instances on a frame of `image_size` = (width, height)."""
    array = np.asarray(masks)
    width, height = image_size
    if array.ndim != 3 or array.shape != (count, height, width):
        raise MaskError(f"masks of shape {array.shape} do not fit {count} instance(s) on a {width}x{height} frame "
                        f"(expected ({count}, {height}, {width}))")
    return array.astype(bool, copy=False)


def encode_rle(masks: Masks) -> list[dict[str, Any]]:
    """One COCO compressed RLE per mask: `{"size": [height, width], "counts": str}`."""
    from faster_coco_eval.core import mask as coco_mask

    if len(masks) == 0:
        return []
    encoded = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(v) for v in rle["size"]], "counts": _text(rle["counts"])} for rle in encoded]


def decode_rle(rles: list[dict[str, Any]], image_size: tuple[int, int]) -> Masks:
    """The masks `encode_rle` wrote (or COCO RLEs with list counts); an RLE of another size is a `MaskError`."""
    from faster_coco_eval.core import mask as coco_mask

    width, height = image_size
    if not rles:
        return empty_masks(0, height, width)
    for i, rle in enumerate(rles):
        size = list(rle.get("size", ())) if isinstance(rle, dict) else None
        if size != [height, width]:
            raise MaskError(f"mask {i}: RLE size {size} (height, width) does not match the {width}x{height} frame")
    try:
        compressed = [rle if isinstance(rle["counts"], str) else coco_mask.frPyObjects(rle, height, width)
                      for rle in rles]
        decoded = coco_mask.decode([{"size": r["size"], "counts": _bytes(r["counts"])} for r in compressed])
    except (KeyError, TypeError, ValueError) as exc:
        raise MaskError(f"RLE that does not decode on a {width}x{height} frame: {exc}") from None
    return np.ascontiguousarray(np.asarray(decoded).reshape(height, width, -1).transpose(2, 0, 1)).astype(bool)


def polygons(mask: Masks) -> list[list[list[int]]]:
    """Outer outlines of one mask's parts, each a list of `[x, y]` pixel points (at least 3; a part too thin for an
    outline of its own is given its bounding rectangle). Holes are not traced: `area_px` says how much is filled."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outlines = []
    for contour in contours:
        points = cv2.approxPolyDP(contour, POLYGON_TOLERANCE_PX, True).reshape(-1, 2)
        if len(points) < 3:
            x, y, w, h = cv2.boundingRect(contour)
            points = np.array([[x, y], [x + w - 1, y], [x + w - 1, y + h - 1], [x, y + h - 1]])
        outlines.append([[int(x), int(y)] for x, y in points])
    return outlines


def mask_boxes(masks: Masks) -> npt.NDArray[np.float32]:
    """Tight xyxy box of each mask (x2/y2 exclusive); an empty mask gets an all-zero box."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def _text(counts: bytes | str) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


def _bytes(counts: bytes | str) -> bytes:
    return counts.encode("ascii") if isinstance(counts, str) else counts
