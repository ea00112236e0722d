"""`data synth`: synthetic defect frames written as a Florence JSONL data set (`images/{index:06d}.png`).

The frames come from `agent.capture.synthetic.SyntheticGenerator`, so the same seed and parameters always give
byte-identical images and annotations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2

from agent.capture.synthetic import DEFAULT_CLASSES, SyntheticFrame, SyntheticGenerator
from finetune.data.dataset import Dataset, Progress, Sample, no_progress
from finetune.data.files import prepare_output_dir
from finetune.data.jsonl import write_jsonl


def write_synthetic(
    out: Path,
    count: int,
    seed: int = 0,
    size: int = 256,
    classes: Sequence[str] = DEFAULT_CLASSES,
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> Dataset:
    """Generate frames 0..count-1 and write them with `annotations.jsonl` + `classes.txt` under `out`."""
    if count < 1:
        raise ValueError(f"count={count}: must be at least 1")
    generator = SyntheticGenerator(seed=seed, size=size, classes=classes)
    frames = (generator.frame(index) for index in progress(range(count), "generating frames"))
    return write_frames(frames, generator.classes, out, overwrite, progress)


def write_frames(frames: Iterable[SyntheticFrame], classes: Sequence[str], out: Path, overwrite: bool = False,
                 progress: Progress = no_progress) -> Dataset:
    """Frames with their true boxes as a Florence JSONL data set under `out` (images/{index:06d}.png); frames are
    written one by one as they come, so a lazy iterable of thousands never sits in memory."""
    prepare_output_dir(out, overwrite)
    images_dir = out / "images"
    images_dir.mkdir(exist_ok=True)
    samples = []
    for frame in frames:
        path = images_dir / f"{frame.index:06d}.png"
        if not cv2.imwrite(str(path), frame.image):
            raise OSError(f"could not write {path}")
        samples.append(Sample(path, frame.detections))
    dataset = Dataset(tuple(classes), samples, root=images_dir)
    write_jsonl(dataset, out, overwrite=True, progress=progress)
    return dataset
