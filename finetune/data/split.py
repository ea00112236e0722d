"""`data split`: train / val / test sets, stratified by class and reproducible from the image bytes.

Images with identical bytes form one unit (a duplicate can never sit in two splits and leak). Each unit belongs to
the stratum of its rarest class (by images in the whole set; units without boxes form their own stratum). Within a
stratum units are ordered by sha256(seed, image bytes) and cut: the first round(n * test) go to test, the next
round(n * val) to val, the rest to train. So the same seed and images give the same split whatever the file names
or listing order, and adding images moves only units near a cut.

Region-task lines (`Dataset.tasks`) go with their image: to its unit's split when the image has an `<OD>` line (or
the same bytes as one), else their images form units of a stratum of their own, cut the same way, so the `<OD>`
split is the one the set would get without them.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from finetune.data.dataset import Dataset, Progress, Sample, TaskSample, no_progress
from finetune.data.files import prepare_output_dir
from finetune.data.jsonl import write_jsonl

SPLIT_NAMES = ("train", "val", "test")
_NO_DEFECT = ""  # stratum key of units without boxes (no class has an empty name)
_TASKS_ONLY = "\x00tasks"  # stratum key of images that only region-task lines name


@dataclass(frozen=True)
class _Unit:
    """Samples whose images have the same bytes; `digest` is that content hash."""

    digest: str
    samples: tuple[Sample | TaskSample, ...]

    @property
    def labels(self) -> set[str]:
        return {label for sample in self.samples for label in sample.detections.labels}


@dataclass(frozen=True)
class SplitResult:
    """Samples per split name (in data set order; a zero fraction gives an empty split), repeated images, and the
    region-task lines per split."""

    splits: dict[str, list[Sample]]
    duplicates: int
    tasks: dict[str, list[TaskSample]] = field(default_factory=dict)


def split_dataset(
    dataset: Dataset, val: float, test: float = 0.0, seed: int = 0, progress: Progress = no_progress
) -> SplitResult:
    """Split into "train", "val", "test" (see the module doc); refuses a split asked for that would be empty."""
    _check_fractions(val, test, len(dataset) + len(dataset.tasks))
    units = _units(dataset.samples, progress)
    task_units = _units(dataset.tasks, progress)
    strata = _strata(units)
    digests = {unit.digest for unit in units}
    if any(unit.digest not in digests for unit in task_units):
        strata[_TASKS_ONLY] = [unit for unit in task_units if unit.digest not in digests]
    assigned: dict[str, str] = {}  # unit digest -> split; a task line's image with an <OD> line shares its digest
    for stratum in strata.values():
        ordered = sorted(stratum, key=lambda unit: _order_key(seed, unit.digest))
        n_test, n_val = _share(len(ordered), test), _share(len(ordered), val)
        for rank, unit in enumerate(ordered):
            assigned[unit.digest] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    where = {id(item): assigned[unit.digest] for unit in [*units, *task_units] for item in unit.samples}
    splits = {name: [s for s in dataset.samples if where[id(s)] == name] for name in SPLIT_NAMES}
    tasks = {name: [t for t in dataset.tasks if where[id(t)] == name] for name in SPLIT_NAMES}
    both = {name: len(splits[name]) + len(tasks[name]) for name in SPLIT_NAMES}
    images = len(digests | {unit.digest for unit in task_units})
    _check_not_empty(both, {"train": 1.0 - val - test, "val": val, "test": test}, images)
    return SplitResult(splits, len(dataset) - len(units), tasks)


def _share(count: int, fraction: float) -> int:
    """count * fraction rounded half up (Python's round() would send 2.5 to 2 but 3.5 to 4)."""
    return math.floor(count * fraction + 0.5)


def _check_fractions(val: float, test: float, count: int) -> None:
    for name, value in (("val", val), ("test", test)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name} {value}: must be a fraction from 0 up to (not including) 1")
    if val + test >= 1.0:
        raise ValueError(f"--val {val} + --test {test} = {val + test:g} leaves nothing to train on; keep it below 1")
    if count == 0:
        raise ValueError("the data set has no images to split")


def _check_not_empty(sizes: dict[str, int], fractions: dict[str, float], count: int) -> None:
    """A split asked for (fraction > 0) that got no image would silently train or score on nothing."""
    for name, size in sizes.items():
        if fractions[name] > 0 and not size:
            raise ValueError(f"{name} would be empty: {count} images are too few for a {name} fraction of "
                             f"{fractions[name]:g}")


def _units(items: Sequence[Sample | TaskSample], progress: Progress) -> list[_Unit]:
    by_digest: dict[str, list[Sample | TaskSample]] = {}
    for sample in progress(items, "hashing images"):
        by_digest.setdefault(hashlib.sha256(sample.image.read_bytes()).hexdigest(), []).append(sample)
    return [_Unit(digest, tuple(samples)) for digest, samples in by_digest.items()]


def _strata(units: list[_Unit]) -> dict[str, list[_Unit]]:
    """Units grouped by their rarest class, so a rare class is spread over the splits like a common one."""
    frequency: Counter[str] = Counter(label for unit in units for label in unit.labels)
    strata: dict[str, list[_Unit]] = {}
    for unit in units:
        labels = unit.labels
        key = min(labels, key=lambda label: (frequency[label], label)) if labels else _NO_DEFECT
        strata.setdefault(key, []).append(unit)
    return strata


def _order_key(seed: int, digest: str) -> str:
    return hashlib.sha256(f"{seed}:{digest}".encode()).hexdigest()


def write_splits(
    dataset: Dataset, splits: dict[str, list[Sample]], out: Path, overwrite: bool = False,
    progress: Progress = no_progress, tasks: dict[str, list[TaskSample]] | None = None,
) -> dict[str, Path]:
    """Each non-empty split as a Florence JSONL set `out/{train,val,test}/` with the full class list (and its
    region-task lines, `tasks`)."""
    prepare_output_dir(out, overwrite)
    written = {}
    for name, samples in splits.items():
        lines = (tasks or {}).get(name, [])
        if samples or lines:
            part = Dataset(dataset.class_names, samples, root=dataset.root, tasks=lines)
            written[name] = write_jsonl(part, out / name, overwrite=overwrite, progress=progress)
    return written
