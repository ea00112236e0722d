"""progress.json for watchers: stages, training counters and ETA written when due, the final state; a cancel (or
SIGTERM) is a flag the run checks at safe points."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from agent.runs import read_progress
from calibration.progress import RunWatch, cancel_on_sigterm
from calibration.report import Cancelled


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stages_and_training_steps_reach_progress_json_at_most_every_second(tmp_path: Path) -> None:
    clock = Clock()
    watch = RunWatch(tmp_path, "20250131T120000000000Z", clock)
    watch.stage("snapshot")
    assert read_progress(tmp_path).stage == "snapshot"  # type: ignore[union-attr]
    watch.stage("train")
    watch.start_training(budget_s=None)
    clock.now += 2.0
    watch.training_step(1, 10, {"loss": 0.9, "lr": 1e-4})
    clock.now += 0.5
    watch.training_step(2, 10, {"loss": 0.8, "lr": 1e-4})  # within a second of the last write: not written
    progress = read_progress(tmp_path)
    assert progress is not None and (progress.stage, progress.step, progress.total_steps) == ("train", 1, 10)
    assert progress.loss == 0.9 and progress.eta_s == 18.0 and progress.state == "running"
    clock.now += 0.5
    watch.training_step(3, 10, {"loss": 0.7, "lr": 1e-4})
    assert read_progress(tmp_path).step == 3  # type: ignore[union-attr]


def test_the_eta_never_exceeds_the_time_budget_and_the_last_step_is_always_written(tmp_path: Path) -> None:
    clock = Clock()
    watch = RunWatch(tmp_path, "r", clock)
    watch.stage("train")
    watch.start_training(budget_s=30.0)
    clock.now += 10.0
    watch.training_step(1, 100, {"loss": 1.0})
    assert read_progress(tmp_path).eta_s == 20.0  # type: ignore[union-attr]
    watch.training_step(100, 100, {"loss": 0.1})
    assert read_progress(tmp_path).step == 100  # type: ignore[union-attr]


def test_finish_writes_the_end_state_and_keeps_the_stage(tmp_path: Path) -> None:
    watch = RunWatch(tmp_path, "r")
    watch.stage("evaluate")
    watch.finish("failed", "step 'evaluate' failed: boom")
    progress = read_progress(tmp_path)
    assert progress is not None and (progress.state, progress.stage, progress.message) == (
        "failed", "evaluate", "step 'evaluate' failed: boom")


def test_a_cancel_is_raised_at_the_next_check_training_step_or_batch(tmp_path: Path) -> None:
    watch = RunWatch(tmp_path, "r")
    watch.check()
    assert list(watch.batches([1, 2], "x")) == [1, 2]
    watch.cancel()
    with pytest.raises(Cancelled):
        watch.check()
    with pytest.raises(Cancelled):
        watch.training_step(1, 2, {"loss": 1.0})
    with pytest.raises(Cancelled):
        list(watch.batches([1, 2], "x"))


def test_sigterm_only_sets_the_cancel_flag_while_the_run_owns_it(tmp_path: Path) -> None:
    watch = RunWatch(tmp_path, "r")
    before = signal.getsignal(signal.SIGTERM)
    with cancel_on_sigterm(watch):
        os.kill(os.getpid(), signal.SIGTERM)
        assert watch.cancelled
    assert signal.getsignal(signal.SIGTERM) is before
