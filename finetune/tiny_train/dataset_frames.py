"""A user's data set as training frames for the tiny recipe: images resized to the model's input, boxes scaled.

Images are read when a batch asks for them (a few thousand files need not sit in memory), grey files become three
channels (`agent.imageio.read_image`), and the resize is the detector's (bicubic, `Florence2Detector.preprocess`),
so the model trains on exactly the pixels it will see on the line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from finetune.data.dataset import Dataset, Sample


@dataclass(frozen=True)
class DatasetFrame:
    """One sample at the model's input size; `image` reads and resizes the file on every call."""

    path: Path
    file_size: tuple[int, int]  # (width, height) the annotation was made on
    detections: Detections  # boxes scaled to the model's input size, in the model's class order

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        from agent.imageio import read_image

        image = read_image(self.path)
        if (image.shape[1], image.shape[0]) != self.file_size:
            raise ValueError(f"{self.path}: image is {image.shape[1]}x{image.shape[0]}, its annotation says "
                             f"{self.file_size[0]}x{self.file_size[1]}")
        size = self.detections.image_size
        if self.file_size == size:
            return image
        return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), dtype=np.uint8)


def scale_detections(dets: Detections, size: tuple[int, int]) -> Detections:
    """The same boxes in an image resized to `size` = (width, height)."""
    w, h = dets.image_size
    factors = np.asarray([size[0] / w, size[1] / h, size[0] / w, size[1] / h], dtype=np.float32)
    return Detections(dets.xyxy * factors, dets.class_id, dets.score, dets.class_names, size)


def dataset_frames(dataset: Dataset, class_names: Sequence[str], size: tuple[int, int]) -> list[DatasetFrame]:
    """Every sample of `dataset` as a frame for a model with `class_names` and input `size`.

    A class the model lacks is a ValueError naming it (nothing is dropped)."""
    missing = [name for name in dataset.class_names if name not in class_names]
    if missing:
        raise ValueError(f"data set class(es) {missing} are not among the model's classes {list(class_names)}")
    return [DatasetFrame(s.image, s.image_size, scale_detections(in_classes(s, class_names), size))
            for s in dataset.samples]


def in_classes(sample: Sample, class_names: Sequence[str]) -> Detections:
    dets = sample.detections
    return Detections.from_labels(dets.labels, dets.xyxy, tuple(class_names), sample.image_size)


def split_dataset(dataset: Dataset, val_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, held-out) parts of `dataset`: a seeded random `val_fraction` of the samples is held out.

    Both parts keep the full class list, so a class that only the held-out part has is still a model class."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: must lie strictly between 0 and 1")
    n = len(dataset.samples)
    held = round(n * val_fraction)
    if held < 1 or held >= n:
        raise ValueError(f"val_fraction={val_fraction} of {n} images leaves no training or no held-out image; "
                         "pass a separate --val set or more images")
    order = np.random.default_rng(seed).permutation(n)
    pick = [dataset.samples[i] for i in sorted(order[held:])], [dataset.samples[i] for i in sorted(order[:held])]
    return (Dataset(dataset.class_names, pick[0], root=dataset.root),
            Dataset(dataset.class_names, pick[1], root=dataset.root))
