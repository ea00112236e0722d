"""Helpers for data-format tests: tiny images and data sets generated on the fly, and box comparison."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agent.detections import Detections
from finetune.data.dataset import Dataset, Sample

CLASSES = ("scratch", "hole", "stain")


def write_image(path: Path, size: tuple[int, int] = (200, 150), channels: int = 3, seed: int = 0) -> Path:
    """A random-noise image of (width, height) at `path` (format from the suffix)."""
    w, h = size
    shape = (h, w, channels) if channels > 1 else (h, w)
    pixels = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return path


def random_detections(rng: np.random.Generator, size: tuple[int, int], count: int) -> Detections:
    """`count` float boxes inside a (w, h) frame, the first one touching the bottom-right border."""
    w, h = size
    x1 = rng.uniform(0, w - 30, count)
    y1 = rng.uniform(0, h - 30, count)
    xyxy = np.stack([x1, y1, x1 + rng.uniform(2, 30, count), y1 + rng.uniform(2, 30, count)], axis=1)
    if count:
        xyxy[0, 2:] = (w, h)
    return Detections(xyxy, rng.integers(0, len(CLASSES), count), np.ones(count), CLASSES, size)


def random_dataset(root: Path, count: int = 6, seed: int = 0, size: tuple[int, int] = (200, 150)) -> Dataset:
    """`count` PNG images under root/ (some in a sub-folder, one defect-free) with random boxes."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        folder = root / ("line_a" if i % 2 else "line_b")
        image = write_image(folder / f"frame{i:03d}.png", size, seed=seed + i)
        samples.append(Sample(image, random_detections(rng, size, 0 if i == 0 else int(rng.integers(1, 5)))))
    return Dataset(CLASSES, samples, root=root)


def by_name(dataset: Dataset) -> dict[str, Sample]:
    return {str(dataset.relative_name(sample)): sample for sample in dataset}


def assert_same_boxes(expected: Detections, actual: Detections, tolerance: float) -> None:
    """Same labels and one-to-one matching boxes, each corner within `tolerance` pixels."""
    assert actual.image_size == expected.image_size
    assert sorted(actual.labels) == sorted(expected.labels)
    unused = list(range(len(actual)))
    for box in expected:
        candidates = [j for j in unused if actual.labels[j] == box.label]
        errors = [float(np.abs(actual.xyxy[j] - np.asarray(box.xyxy)).max()) for j in candidates]
        best = int(np.argmin(errors))
        assert errors[best] <= tolerance, f"{box} has no match within {tolerance} px (closest off by {errors[best]})"
        unused.remove(candidates[best])


def assert_same_dataset(expected: Dataset, actual: Dataset, tolerance: float) -> None:
    assert actual.class_names == expected.class_names
    want, got = by_name(expected), by_name(actual)
    assert sorted(got) == sorted(want)
    for name, sample in want.items():
        assert_same_boxes(sample.detections, got[name].detections, tolerance)


def bin_width(size: tuple[int, int]) -> float:
    """One `<loc>` bin in pixels along the longer side: the tolerance of a JSONL round trip."""
    return max(size) / 1000


def write_voc_xml(path: Path, filename: str | None, objects: list[tuple[str, float, float, float, float]],
                  size: tuple[int, int] | None = None) -> Path:
    """A VOC annotation at `path`: optional <filename> and <size>, one <object> per (name, x1, y1, x2, y2)."""
    parts = ["<annotation>"]
    if filename is not None:
        parts.append(f"  <filename>{filename}</filename>")
    if size is not None:
        parts.append(f"  <size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, x1, y1, x2, y2 in objects:
        parts.append(f"  <object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                     f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*parts, "</annotation>"]) + "\n")
    return path


def truncate(path: Path) -> Path:
    """Cut an image file in half: the header still reads, the pixels do not decode."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
