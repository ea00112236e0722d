"""The training snapshot: only human-verified training frames train, with their reviewed boxes (or the suggestions
a human accepted); unverified, rejected and golden frames never do."""

from __future__ import annotations

from pathlib import Path

from agent.detections import Detections
from agent.learn.queue import LearningQueue
from agent.statedir import StateDir
from calibration.snapshot import replay_sample, snapshot_queue
from tests.agent.learn.helpers import CLASSES, THRESHOLDS, config, frame, unsure


def test_labelled_frames_become_samples_and_the_rest_never_train(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    queue = LearningQueue(state.queue, config())
    ids = [queue.offer(frame(i * 7), unsure(), THRESHOLDS).entry.id for i in range(3)]  # type: ignore[union-attr]
    reviewed = Detections.from_labels(["hole"], [[1, 2, 20, 30]], CLASSES, (64, 64))
    queue.set_status(ids[0], "labelled", reviewed, reviewer="ana")
    queue.set_status(ids[1], "labelled", reviewer="ana")  # accepted as predicted
    queue.set_status(ids[2], "rejected", reviewer="ana")
    for entry_id in ids:
        queue.set_golden(entry_id, False)
    queue.close()

    dataset = snapshot_queue(state.root, CLASSES, tmp_path / "snapshot")

    assert [list(s.detections.labels) for s in dataset.samples] == [["hole"], ["scratch"]]
    assert all(s.image.parent == tmp_path / "snapshot" / "images" for s in dataset.samples)
    assert any(p.suffix == ".jsonl" for p in (tmp_path / "snapshot").iterdir())


def test_unverified_and_golden_frames_never_train(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    queue = LearningQueue(state.queue, config())
    ids = [queue.offer(frame(i * 7), unsure(), THRESHOLDS).entry.id for i in range(3)]  # type: ignore[union-attr]
    queue.set_status(ids[0], "labelled")  # nobody looked: e.g. an import of untouched suggestions
    queue.set_status(ids[1], "labelled", reviewer="ana")
    queue.set_golden(ids[1], True)  # held out to judge models
    queue.set_status(ids[2], "labelled", reviewer="ana")
    queue.set_golden(ids[2], False)
    queue.close()

    dataset = snapshot_queue(state.root, CLASSES, tmp_path / "snapshot")

    assert [s.image.name for s in dataset.samples] == [f"{ids[2]:09d}.png"]


def test_the_configured_golden_fraction_decides_the_split(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    queue = LearningQueue(state.queue, config())
    for i in range(4):
        queue.set_status(queue.offer(frame(i * 7), unsure(), THRESHOLDS).entry.id, "labelled",  # type: ignore[union-attr]
                         reviewer="ana")
    queue.close()
    assert len(snapshot_queue(state.root, CLASSES, tmp_path / "a", config(golden_fraction=0.0)).samples) == 4
    assert snapshot_queue(state.root, CLASSES, tmp_path / "b", config(golden_fraction=1.0)).samples == []


def test_a_state_dir_without_a_queue_gives_an_empty_snapshot(tmp_path: Path) -> None:
    dataset = snapshot_queue(tmp_path / "state", CLASSES, tmp_path / "snapshot")
    assert dataset.samples == [] and not (tmp_path / "snapshot").exists()


def test_no_replay_data_means_no_replay_samples() -> None:
    assert replay_sample(None, 10, 0, CLASSES) == []
