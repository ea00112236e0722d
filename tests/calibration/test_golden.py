"""The golden set: the queue's verified golden frames plus an external set, copied into the run folder; a set with
too few boxes of some class is refused, naming each short class and its count."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.detections import Detections
from agent.learn.queue import LearningQueue
from agent.statedir import StateDir
from calibration.golden import golden_set, too_small_reason
from calibration.report import RunError
from finetune.data.dataset import Dataset, Sample
from finetune.data.jsonl import write_jsonl
from tests.agent.learn.helpers import CLASSES, THRESHOLDS, config, frame, unsure


def queue_with_golden(state: StateDir) -> list[int]:
    """Three labelled frames: a verified golden one, an unverified golden one, a verified training one."""
    queue = LearningQueue(state.queue, config())
    ids = [queue.offer(frame(i * 7), unsure(), THRESHOLDS).entry.id for i in range(3)]  # type: ignore[union-attr]
    hole = Detections.from_labels(["hole", "hole"], [[1, 2, 20, 30], [30, 30, 40, 40]], CLASSES, (64, 64))
    queue.set_status(ids[0], "labelled", hole, reviewer="ana")
    queue.set_status(ids[1], "labelled", hole)
    queue.set_status(ids[2], "labelled", hole, reviewer="ana")
    for entry_id, golden in zip(ids, (True, True, False)):
        queue.set_golden(entry_id, golden)
    queue.close()
    return ids


def external_set(folder: Path, classes: tuple[str, ...] = CLASSES) -> Path:
    import cv2
    import numpy as np

    (folder / "images").mkdir(parents=True)
    image = folder / "images" / "good.png"
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    stain = Detections.from_labels([classes[-1]], [[3, 3, 9, 9]], classes, (64, 64))
    write_jsonl(Dataset(classes, [Sample(image, stain)]), folder, overwrite=True)
    return folder


def test_verified_golden_frames_and_the_external_set_make_the_golden_set(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    ids = queue_with_golden(state)
    golden = golden_set(state.root, CLASSES, tmp_path / "run" / "golden", config(), external_set(tmp_path / "ext"))
    assert golden.entry_ids == [ids[0], None] and golden.queue_frames == 1
    assert golden.boxes() == {"scratch": 0, "hole": 2, "stain": 1}
    assert [s.image.name for s in golden.dataset.samples] == [f"{ids[0]:09d}.png", "x00000_good.png"]
    assert all(s.image.is_file() and s.image.parent == tmp_path / "run" / "golden" / "images"
               for s in golden.dataset.samples)
    assert golden.to_json(2) == {"frames": 2, "queue_frames": 1, "external": str(tmp_path / "ext"),
                                 "external_frames": 1, "boxes": {"scratch": 0, "hole": 2, "stain": 1},
                                 "min_per_class": 2}


def test_a_golden_set_short_of_some_class_is_refused_naming_each(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    queue_with_golden(state)
    golden = golden_set(state.root, CLASSES, tmp_path / "golden", config(), external_set(tmp_path / "ext"))
    reason = too_small_reason(golden, 2)
    assert reason is not None and "at least 2 box(es) per class needed, short: scratch 0, stain 1 (1 verified " \
        f"golden queue frame(s) + 1 from {tmp_path / 'ext'})" in reason
    assert too_small_reason(golden, 0) is None and too_small_reason(golden, 1) is not None


def test_an_empty_golden_set_is_refused_even_without_a_minimum(tmp_path: Path) -> None:
    golden = golden_set(tmp_path / "state", CLASSES, tmp_path / "golden")
    assert golden.dataset.samples == [] and "the golden set is empty" in str(too_small_reason(golden, 0))


def test_an_external_class_the_model_lacks_is_named(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"class\(es\) \['dent'\] are unknown"):
        golden_set(tmp_path / "state", CLASSES, tmp_path / "golden", None,
                   external_set(tmp_path / "ext", ("hole", "dent")))
