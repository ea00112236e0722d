"""What a recalibration run trains on: the human-verified training frames of the learning queue, plus a replay
sample of older data. Frames nobody verified (new, rejected, or labelled with the model's own untouched suggestions)
never train; the golden frames are held out (`calibration.golden`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2

from agent.detections import Detections
from agent.statedir import StateDir
from calibration.report import RunError
from finetune.data.dataset import Dataset, Sample

if TYPE_CHECKING:
    from agent.learn.queue import LearningQueue


@contextlib.contextmanager
def state_queue(state_dir: Path, queue_config: Any = None) -> Iterator[LearningQueue | None]:
    """The state dir's learning queue, or None when it has none (a run never creates one)."""
    from agent.config import QueueConfig
    from agent.learn.queue import LearningQueue

    state = StateDir(state_dir)
    if not state.queue_index.is_file():
        yield None
        return
    queue = LearningQueue(state.queue, queue_config if queue_config is not None else QueueConfig())
    try:
        yield queue
    finally:
        queue.close()


def snapshot_queue(state_dir: Path, class_names: tuple[str, ...], out: Path, queue_config: Any = None) -> Dataset:
    """The verified training frames (`LearningQueue.verified("training")`) as a Florence JSONL set in `out`.

    `queue_config` (the daemon's `queue` section) decides the golden fraction, so the split is the station's.
    """
    from finetune.data.jsonl import write_jsonl

    with state_queue(state_dir, queue_config) as queue:
        entries = queue.verified("training") if queue is not None else []
        if not entries:
            return Dataset(class_names, [])
        images = out / "images"
        images.mkdir(parents=True, exist_ok=True)
        samples = [Sample(copy_frame(entry.path, images), labels_of(entry, class_names)) for entry in entries]
    dataset = Dataset(class_names, samples, root=images)
    write_jsonl(dataset, out, overwrite=True)
    return dataset


def copy_frame(src: Path, folder: Path, name: str | None = None) -> Path:
    """Decode `src` (so an unreadable frame fails here, named) and write it into `folder`."""
    image = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if image is None:
        raise RunError(f"frame {src} is missing or unreadable")
    target = folder / (name or src.name)
    cv2.imwrite(str(target), image)
    return target


def labels_of(entry: Any, class_names: tuple[str, ...]) -> Detections:
    """A verified entry's boxes (reviewed, or the suggestions a human accepted) in the model's class order."""
    boxes: Detections = entry.label_boxes()
    try:
        return Detections.from_labels(boxes.labels, boxes.xyxy, class_names, boxes.image_size)
    except ValueError as exc:
        raise RunError(f"queue entry {entry.id}: {exc}") from exc


def replay_sample(path: Path | None, count: int, seed: int, class_names: tuple[str, ...]) -> list[Sample]:
    """Up to `count` random samples of earlier training data (Florence JSONL), so the adapter does not forget."""
    if path is None or count <= 0:
        return []
    from finetune.data import ReadOptions, read_dataset
    from finetune.train.batches import align_classes

    # without classes.txt the labels name the classes; each is checked against the model's own list below
    dataset = read_dataset("jsonl", Path(path), ReadOptions(discover_classes=True))
    chosen = random.Random(seed).sample(range(len(dataset.samples)), min(count, len(dataset.samples)))
    subset = Dataset(dataset.class_names, [dataset.samples[i] for i in sorted(chosen)])
    return align_classes(subset, class_names, f"replay data {path}")
