"""Frames -> training tensors for the tiny recipe: flips, per-cell class/box targets, pixels and target tokens."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import torch

from agent.detections import Detections
from agent.detector.loc import to_bins, to_loc_text
from finetune.losses import label_ids

TASK = "<OD>"


class TrainFrame(Protocol):
    """What the recipe trains on: a BGR (or grey) uint8 image and its boxes in that image's pixels.

    `SyntheticFrame`s and `finetune.tiny_train.dataset_frames.DatasetFrames` (a user's data set) both are."""

    @property
    def image(self) -> npt.NDArray[np.uint8]: ...

    @property
    def detections(self) -> Detections: ...


@dataclass
class TinyBatch:
    pixel_values: torch.Tensor  # B x 3 x S x S
    labels: torch.Tensor  # B x T, -100 on padding
    cell_class: torch.Tensor  # B x G*G, 0 = background, c + 1 = class c
    cell_box: torch.Tensor  # B x G*G x 4 loc bins, -1 where the cell is background


def flip_frame(image: npt.NDArray[np.uint8], dets: Detections, horizontal: bool, vertical: bool
               ) -> tuple[npt.NDArray[np.uint8], Detections]:
    """Mirror a frame and its boxes."""
    w, h = dets.image_size
    xyxy = dets.xyxy.copy()
    if horizontal:
        image = image[:, ::-1]
        xyxy[:, [0, 2]] = w - xyxy[:, [2, 0]]
    if vertical:
        image = image[::-1]
        xyxy[:, [1, 3]] = h - xyxy[:, [3, 1]]
    flipped = Detections(xyxy, dets.class_id, dets.score, dets.class_names, dets.image_size)
    return np.ascontiguousarray(image), flipped


def cell_targets(dets: Detections, grid: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per grid cell (raster order): class (0 background, c + 1) and the covering box's loc bins (-1 if none).

    A cell belongs to a box when the cell centre lies inside it; the cell holding the box centre always does,
    so a defect smaller than a cell still owns one. Smaller boxes are written last and win ties.
    """
    w, h = dets.image_size
    classes = np.zeros((grid, grid), dtype=np.int64)
    boxes = np.full((grid, grid, 4), -1, dtype=np.int64)
    centres_x = (np.arange(grid) + 0.5) * w / grid
    centres_y = (np.arange(grid) + 0.5) * h / grid
    bins = to_bins(dets)
    area = (dets.xyxy[:, 2] - dets.xyxy[:, 0]) * (dets.xyxy[:, 3] - dets.xyxy[:, 1])
    for i in np.argsort(-area):
        x1, y1, x2, y2 = dets.xyxy[i]
        inside = ((centres_y >= y1) & (centres_y < y2))[:, None] & ((centres_x >= x1) & (centres_x < x2))[None, :]
        cx = min(int((x1 + x2) / 2 / w * grid), grid - 1)
        cy = min(int((y1 + y2) / 2 / h * grid), grid - 1)
        inside[cy, cx] = True
        classes[inside] = dets.class_id[i] + 1
        boxes[inside] = bins[i]
    return classes.reshape(-1), boxes.reshape(-1, 4)


def grid_size(processor: Any) -> int:
    """Side of the image-token grid: the processor's image_seq_length is grid^2 spatial tokens + 1 temporal."""
    side = math.isqrt(int(processor.image_processor.image_seq_length) - 1)
    if side * side + 1 != int(processor.image_processor.image_seq_length):
        raise ValueError(f"image_seq_length {processor.image_processor.image_seq_length} is not grid^2 + 1")
    return side


class TinyBatcher:
    """Turns frames into tensors: pixels normalised like the processor, target tokens, per-cell targets."""

    def __init__(self, processor: Any, grid: int, flip: bool) -> None:
        ip = processor.image_processor
        self.tokenizer = processor.tokenizer
        self.size = (int(ip.size["width"]), int(ip.size["height"]))
        self.mean = np.asarray(ip.image_mean, dtype=np.float32)
        self.std = np.asarray(ip.image_std, dtype=np.float32)
        self.scale = float(ip.rescale_factor)
        self.grid = grid
        self.flip = flip

    def pixels(self, images: Sequence[npt.NDArray[np.uint8]]) -> torch.Tensor:
        """BGR (or grey) frames -> normalised RGB tensor (the same transform as `Florence2Detector.preprocess`)."""
        batch = []
        for image in images:
            rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB)
            if rgb.shape[1::-1] != self.size:
                rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_CUBIC)
            batch.append((rgb.astype(np.float32) * self.scale - self.mean) / self.std)
        return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).contiguous()

    def __call__(self, frames: Sequence[TrainFrame], rng: np.random.Generator) -> TinyBatch:
        images, texts, classes, boxes = [], [], [], []
        for frame in frames:
            image, dets = frame.image, frame.detections
            if self.flip:
                image, dets = flip_frame(image, dets, bool(rng.random() < 0.5), bool(rng.random() < 0.5))
            images.append(image)
            texts.append(to_loc_text(dets.sorted_raster()))
            cls, box = cell_targets(dets, self.grid)
            classes.append(cls)
            boxes.append(box)
        return TinyBatch(self.pixels(images), label_ids(self.tokenizer, texts),
                         torch.from_numpy(np.stack(classes)), torch.from_numpy(np.stack(boxes)))
