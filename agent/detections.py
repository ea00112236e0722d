"""The one value type for detections that flows between every stage (detector, decide, publish, queue, training).

Boxes are `xyxy` in pixels of the frame they belong to. The type is model-independent (like supervision's
`Detections`): a model's own box dialect, such as Florence-2's `<loc_N>` tokens, lives with that model
(`agent.detector.loc`). `serialize` / `deserialize` round-trip a value losslessly (the learning queue stores them).
Instance masks are optional (`mask`, N x H x W booleans, from a segmenting family such as Mask R-CNN; Florence-2's
boxes have none): they travel as COCO RLE in `serialize` and as outline polygons plus `area_px` in `to_json`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.masks import check_masks, decode_rle, encode_rle, polygons


class DetectionsError(ValueError):
    """Raised for boxes or text that cannot describe detections (names the bad value)."""


@dataclass(frozen=True)
class Box:
    """One detection, as handed to JSON payloads and annotators."""

    label: str
    class_id: int
    score: float
    xyxy: tuple[float, float, float, float]


class Detections:
    """N detections on one frame of `image_size` = (width, height) pixels.

    `class_names` is the model's class list; `class_id` indexes into it. Scores are per-box confidences in [0, 1]
    (see `agent.detector.scoring` for how they are computed from token probabilities). `mask`, when not None, holds
    one boolean H x W instance mask per box, on the same frame.
    """

    xyxy: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int64]
    score: npt.NDArray[np.float32]
    mask: npt.NDArray[np.bool_] | None

    def __init__(
        self,
        xyxy: npt.ArrayLike,
        class_id: npt.ArrayLike,
        score: npt.ArrayLike,
        class_names: Sequence[str],
        image_size: tuple[int, int],
        data: dict[str, Any] | None = None,
        mask: npt.ArrayLike | None = None,
    ) -> None:
        self.xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        self.class_id = np.asarray(class_id, dtype=np.int64).reshape(-1)
        self.score = np.asarray(score, dtype=np.float32).reshape(-1)
        self.class_names = tuple(class_names)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.data = dict(data or {})
        n = len(self.xyxy)
        if len(self.class_id) != n or len(self.score) != n:
            raise DetectionsError(
                f"xyxy has {n} rows but class_id has {len(self.class_id)} and score {len(self.score)}"
            )
        bad = (self.class_id < 0) | (self.class_id >= len(self.class_names))
        if bad.any():
            raise DetectionsError(f"class_id {int(self.class_id[bad][0])} outside 0..{len(self.class_names) - 1}")
        try:
            self.mask = None if mask is None else check_masks(mask, n, self.image_size)
        except ValueError as exc:
            raise DetectionsError(str(exc)) from None

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, labels={self.labels}, image_size={self.image_size})"

    # ----- construction -------------------------------------------------------------------------------------------
    @classmethod
    def empty(cls, class_names: Sequence[str], image_size: tuple[int, int]) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), tuple(class_names), image_size)

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[str],
        xyxy: npt.ArrayLike,
        class_names: Sequence[str],
        image_size: tuple[int, int],
        score: npt.ArrayLike | None = None,
        mask: npt.ArrayLike | None = None,
    ) -> Detections:
        """Build from label strings; an unknown label raises `DetectionsError` naming it."""
        index = {name: i for i, name in enumerate(class_names)}
        unknown = [label for label in labels if label not in index]
        if unknown:
            raise DetectionsError(f"unknown class {unknown[0]!r}; known classes: {list(class_names)}")
        scores = np.ones(len(labels)) if score is None else score
        return cls(np.asarray(xyxy), [index[label] for label in labels], scores, tuple(class_names), image_size,
                   mask=mask)

    @classmethod
    def deserialize(cls, text: str) -> Detections:
        """The value `serialize` wrote (boxes and scores at full float32 precision, masks as COCO RLE)."""
        data = json.loads(text)
        width, height = data["image_size"]
        masks = data.get("masks")
        try:
            mask = None if masks is None else decode_rle(masks, (width, height))
        except ValueError as exc:
            raise DetectionsError(str(exc)) from None
        return cls(np.asarray(data["xyxy"], dtype=np.float32), np.asarray(data["class_id"], dtype=np.int64),
                   np.asarray(data["score"], dtype=np.float32), tuple(data["class_names"]), (width, height),
                   mask=mask)

    # ----- views ----------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyxy)

    def __iter__(self) -> Iterator[Box]:
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.xyxy[i])
            cid = int(self.class_id[i])
            yield Box(self.class_names[cid], cid, float(self.score[i]), (x1, y1, x2, y2))

    def __getitem__(self, index: npt.ArrayLike | slice) -> Detections:
        """Select rows by boolean mask, index array or slice (like supervision's Detections)."""
        idx = index if isinstance(index, slice) else np.asarray(index)
        return Detections(
            self.xyxy[idx], self.class_id[idx], self.score[idx], self.class_names, self.image_size, dict(self.data),
            None if self.mask is None else self.mask[idx],
        )

    def with_scores(self, score: npt.ArrayLike) -> Detections:
        """The same boxes (and masks) with other scores, e.g. calibrated ones."""
        return Detections(self.xyxy, self.class_id, score, self.class_names, self.image_size, self.data, self.mask)

    @property
    def area_px(self) -> npt.NDArray[np.int64] | None:
        """Pixels covered by each instance's mask (how big a defect is); None without masks."""
        return None if self.mask is None else self.mask.sum(axis=(1, 2), dtype=np.int64)

    @property
    def labels(self) -> list[str]:
        return [self.class_names[i] for i in self.class_id]

    def normalized(self) -> npt.NDArray[np.float32]:
        """Boxes as fractions 0..1 of the frame's width/height."""
        w, h = self.image_size
        return (self.xyxy / np.array([w, h, w, h], dtype=np.float32)).astype(np.float32)

    def box_thresholds(self, thresholds: Mapping[str, float], default: float | None = None
                       ) -> npt.NDArray[np.float32]:
        """The threshold that applies to each box: its class's entry in `thresholds`, else `default`.

        Without a default every class of `class_names` must be listed (KeyError otherwise), present or not.
        Thresholds are compared in float32, the precision of the scores.
        """
        per_class = [thresholds[name] if default is None else thresholds.get(name, default)
                     for name in self.class_names]
        return np.asarray(per_class, dtype=np.float32).reshape(-1)[self.class_id]

    def above(self, thresholds: Mapping[str, float], default: float | None = None) -> Detections:
        """The boxes whose score reaches their class threshold (`box_thresholds`): what counts as a defect."""
        return self[self.score >= self.box_thresholds(thresholds, default)]

    def sorted_raster(self) -> Detections:
        """Boxes in reading order (top-to-bottom, then left-to-right): the order training targets use."""
        order = np.lexsort((self.xyxy[:, 0], self.xyxy[:, 1])) if len(self) else np.zeros(0, dtype=np.int64)
        return self[order]

    def to_json(self, decimals: int = 1) -> list[dict[str, Any]]:
        """List of `{"label", "score", "box", "box_norm"}` dicts, the shape of MQTT payloads and CLI output; with
        masks each also has `area_px` and `polygons` (outlines as `[x, y]` pixel points, `agent.masks.polygons`)."""
        norm = self.normalized()
        items = [
            {
                "label": box.label,
                "score": round(box.score, 4),
                "box": [round(v, decimals) for v in box.xyxy],
                "box_norm": [round(float(v), 4) for v in norm[i]],
            }
            for i, box in enumerate(self)
        ]
        if self.mask is not None:
            for item, mask, area in zip(items, self.mask, self.mask.sum(axis=(1, 2)), strict=True):
                item.update(area_px=int(area), polygons=polygons(mask))
        return items

    def serialize(self) -> str:
        """Lossless JSON text of this value (full-precision boxes and scores, masks as COCO RLE; `data` is not
        kept). A value without masks is written exactly as before masks existed."""
        value: dict[str, Any] = {
            "class_names": list(self.class_names), "image_size": list(self.image_size),
            "xyxy": self.xyxy.tolist(), "class_id": self.class_id.tolist(), "score": self.score.tolist(),
        }
        if self.mask is not None:
            value["masks"] = encode_rle(self.mask)
        return json.dumps(value)

    def to_supervision(self) -> Any:
        """A `supervision.Detections` for its annotators and metrics."""
        import supervision as sv

        return sv.Detections(
            xyxy=self.xyxy.astype(np.float32),
            confidence=self.score.astype(np.float32),
            class_id=self.class_id.astype(int),
            mask=self.mask,
            data={"class_name": np.array(self.labels, dtype=object)},
        )


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Pairwise IoU of N x 4 and M x 4 xyxy boxes -> N x M."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
