"""Splitting a data set: stratified by class, reproducible from seed and image bytes, duplicates kept together."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.detections import Detections
from finetune.data.dataset import Dataset, Sample
from finetune.data.jsonl import read_jsonl
from finetune.data.split import split_dataset, write_splits
from tests.finetune.data.helpers import CLASSES, write_image


def _labelled_set(root: Path, labels: list[list[str]]) -> Dataset:
    """One distinct 32x32 image per entry of `labels`, each label one box."""
    samples = []
    for i, names in enumerate(labels):
        image = write_image(root / f"img{i:03d}.png", (32, 32), seed=i)
        xyxy = np.tile(np.asarray([[1, 1, 9, 9]], dtype=np.float32), (len(names), 1))
        samples.append(Sample(image, Detections.from_labels(names, xyxy, CLASSES, (32, 32))))
    return Dataset(CLASSES, samples, root=root)


def _names(samples: list[Sample]) -> list[str]:
    return sorted(sample.image.name for sample in samples)


def _mixed(root: Path) -> Dataset:
    return _labelled_set(root, [["scratch"]] * 40 + [["hole", "scratch"]] * 10 + [[]] * 10)


def test_same_seed_same_split_another_seed_another(tmp_path: Path) -> None:
    dataset = _mixed(tmp_path)
    first, again = split_dataset(dataset, 0.2, 0.1, seed=0), split_dataset(dataset, 0.2, 0.1, seed=0)
    other = split_dataset(dataset, 0.2, 0.1, seed=1)
    assert {k: _names(v) for k, v in first.splits.items()} == {k: _names(v) for k, v in again.splits.items()}
    assert _names(first.splits["val"]) != _names(other.splits["val"])


def test_the_split_follows_the_image_bytes_not_names_or_listing_order(tmp_path: Path) -> None:
    dataset = _mixed(tmp_path / "a")
    renamed = []
    for sample in reversed(dataset.samples):
        target = tmp_path / "b" / f"renamed_{sample.image.name}"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(sample.image, target)
        renamed.append(Sample(target, sample.detections))
    before = split_dataset(dataset, 0.2, 0.1, seed=3).splits
    after = split_dataset(Dataset(CLASSES, renamed), 0.2, 0.1, seed=3).splits
    for name in before:
        assert [f"renamed_{n}" for n in _names(before[name])] == _names(after[name])


def test_every_class_and_the_defect_free_frames_are_split_in_proportion(tmp_path: Path) -> None:
    splits = split_dataset(_mixed(tmp_path), 0.2, 0.1, seed=0).splits
    rare = {name: sum("hole" in s.detections.labels for s in samples) for name, samples in splits.items()}
    good = {name: sum(len(s.detections) == 0 for s in samples) for name, samples in splits.items()}
    only_scratch = {name: sum(s.detections.labels == ["scratch"] for s in samples) for name, samples in splits.items()}
    assert rare == {"train": 7, "val": 2, "test": 1}
    assert good == {"train": 7, "val": 2, "test": 1}
    assert only_scratch == {"train": 28, "val": 8, "test": 4}


def test_identical_images_always_land_in_the_same_split(tmp_path: Path) -> None:
    dataset = _mixed(tmp_path)
    twins = []
    for sample in dataset.samples[:20]:
        twin = sample.image.with_name(f"twin_{sample.image.name}")
        shutil.copy(sample.image, twin)
        twins.append(Sample(twin, sample.detections))
    result = split_dataset(Dataset(CLASSES, [*dataset.samples, *twins]), 0.3, 0.2, seed=0)
    assert result.duplicates == 20
    where = {s.image.name: name for name, samples in result.splits.items() for s in samples}
    assert all(where[twin.image.name] == where[twin.image.name.removeprefix("twin_")] for twin in twins)


@pytest.mark.parametrize(
    ("val", "test", "message"),
    [(1.0, 0.0, "--val 1.0: must be a fraction"), (-0.1, 0.0, "--val -0.1"), (0.5, 0.5, "leaves nothing to train"),
     (0.01, 0.0, "val would be empty: 4 images are too few for a val fraction of 0.01")],
)
def test_fractions_that_cannot_work_are_refused(tmp_path: Path, val: float, test: float, message: str) -> None:
    dataset = _labelled_set(tmp_path, [["scratch"]] * 4)
    with pytest.raises(ValueError, match=message):
        split_dataset(dataset, val, test)


def test_written_splits_are_jsonl_sets_with_the_full_class_list(tmp_path: Path) -> None:
    dataset = _mixed(tmp_path / "src")
    result = split_dataset(dataset, 0.2, 0.0, seed=0)
    written = write_splits(dataset, result.splits, tmp_path / "out")
    assert sorted(written) == ["train", "val"] and not (tmp_path / "out" / "test").exists()
    for name in written:
        back = read_jsonl(tmp_path / "out" / name)
        assert back.class_names == CLASSES
        assert _names(back.samples) == _names(result.splits[name])
