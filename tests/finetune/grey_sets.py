"""Small grey data sets on disk for the from-scratch recipe's tests: 200x200 single-channel images (noise with one
dark square each) of class names the demo model never saw."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agent.detections import Detections
from finetune.data import Dataset, Sample, read_dataset, write_dataset

STEEL = ("crazing", "rolled-in_scale")


def grey_set(folder: Path, count: int = 6, fmt: str = "jsonl") -> Dataset:
    """`count` grey PNGs and their boxes written as `fmt` into `folder`, read back as the trainer will."""
    rng = np.random.default_rng(0)
    staging = folder.with_name(folder.name + "-src")
    staging.mkdir(parents=True)
    samples = []
    for i in range(count):
        image = rng.integers(100, 160, (200, 200), dtype=np.uint8)
        x, y = int(rng.integers(0, 140)), int(rng.integers(0, 140))
        image[y:y + 50, x:x + 50] = 30
        path = staging / f"{i:02d}.png"
        cv2.imwrite(str(path), image)
        samples.append(Sample(path, Detections.from_labels([STEEL[i % 2]], [[x, y, x + 50, y + 50]], STEEL,
                                                           (200, 200))))
    write_dataset(fmt, Dataset(STEEL, samples), folder)
    return read_dataset(fmt, folder)
