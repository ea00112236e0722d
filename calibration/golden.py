"""The golden set a run judges both models on: the queue's human-verified golden frames (`verified("golden")`),
plus, when configured, an external golden set file (`recalibration.golden_set`, Florence JSONL).

Both are copied into `<run_dir>/golden/` (images + annotations.jsonl), so the report can point at every frame by a
path inside the run folder. A run refuses to start while any class has fewer than
`recalibration.min_golden_per_class` golden boxes: an AP over one or two boxes decides nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.detections import Detections
from calibration.report import RunError
from calibration.snapshot import copy_frame, labels_of, state_queue
from finetune.data.dataset import Dataset, Sample


@dataclass
class GoldenSet:
    """The golden frames, and for each the queue entry it came from (None for a frame of the external set)."""

    dataset: Dataset
    entry_ids: list[int | None]
    external: Path | None = None

    @property
    def queue_frames(self) -> int:
        return sum(entry_id is not None for entry_id in self.entry_ids)

    def boxes(self) -> dict[str, int]:
        """Golden boxes per class of the model (0 for a class without any)."""
        counts: Counter[str] = Counter()
        for sample in self.dataset.samples:
            counts.update(sample.detections.labels)
        return {name: counts[name] for name in self.dataset.class_names}

    def short(self, minimum: int) -> dict[str, int]:
        """The classes with fewer than `minimum` golden boxes, and their counts."""
        return {name: count for name, count in self.boxes().items() if count < minimum}

    def to_json(self, minimum: int) -> dict[str, Any]:
        return {"frames": len(self.dataset.samples), "queue_frames": self.queue_frames,
                "external": None if self.external is None else str(self.external),
                "external_frames": len(self.entry_ids) - self.queue_frames, "boxes": self.boxes(),
                "min_per_class": minimum}


def golden_set(state_dir: Path, class_names: tuple[str, ...], out: Path, queue_config: Any = None,
               external: Path | None = None) -> GoldenSet:
    """The verified golden queue frames, then the external set's frames, copied into `out` as Florence JSONL."""
    from finetune.data.jsonl import write_jsonl

    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    samples, entry_ids = _queue_golden(state_dir, class_names, images, queue_config)
    extra = _external_golden(external, class_names, images) if external is not None else []
    dataset = Dataset(class_names, samples + extra, root=images)
    if dataset.samples:
        write_jsonl(dataset, out, overwrite=True)
    return GoldenSet(dataset, entry_ids + [None] * len(extra), external)


def _queue_golden(state_dir: Path, class_names: tuple[str, ...], images: Path, queue_config: Any
                  ) -> tuple[list[Sample], list[int | None]]:
    with state_queue(state_dir, queue_config) as queue:
        entries = queue.verified("golden") if queue is not None else []
        samples = [Sample(copy_frame(entry.path, images), labels_of(entry, class_names)) for entry in entries]
    return samples, [entry.id for entry in entries]


def _external_golden(path: Path, class_names: tuple[str, ...], images: Path) -> list[Sample]:
    """The external golden set's samples in the model's class order, their images copied as `xNNNNN_<name>`."""
    from finetune.data import ReadOptions, read_dataset

    # without classes.txt the labels name the classes; each is checked against the model's own list below
    dataset = read_dataset("jsonl", Path(path), ReadOptions(discover_classes=True))
    unknown = [name for name in dataset.class_names if name not in class_names]
    if unknown:
        raise RunError(f"golden set {path}: class(es) {unknown} are unknown to the model ({list(class_names)})")
    samples = []
    for index, sample in enumerate(dataset.samples):
        image = copy_frame(sample.image, images, f"x{index:05d}_{sample.image.name}")
        boxes = sample.detections
        samples.append(Sample(image, Detections.from_labels(boxes.labels, boxes.xyxy, class_names,
                                                            boxes.image_size)))
    return samples


def too_small_reason(golden: GoldenSet, minimum: int) -> str | None:
    """Why the golden set cannot judge a model (each short class with its count), or None when it can."""
    if not golden.dataset.samples:
        return ("the golden set is empty: no verified golden queue frames and no recalibration.golden_set; review "
                "frames and mark some golden in the station")
    short = golden.short(minimum)
    if not short:
        return None
    listed = ", ".join(f"{name} {count}" for name, count in short.items())
    source = f"{golden.queue_frames} verified golden queue frame(s)"
    if golden.external is not None:
        source += f" + {len(golden.entry_ids) - golden.queue_frames} from {golden.external}"
    return (f"golden set too small: at least {minimum} box(es) per class needed, short: {listed} ({source}); "
            "review more frames of those classes and mark some golden in the station, or lower "
            "recalibration.min_golden_per_class")
