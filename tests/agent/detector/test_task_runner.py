"""Region tasks on the torch backends, with the tiny model: one list of regions per frame, boxes inside the frame,
grounding answers naming the phrase; torch-fast runs them like torch-eager; the `<OD>` path is untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.detector.fast import FastFlorence2Detector
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.score_calibration import CalibratedDetector, ScoreCalibration
from agent.detector.tasks import DENSE, GROUNDING, OD, TaskError, run_task_on

OPTIONS = DetectorOptions(device="cpu", max_new_tokens=30)


@pytest.fixture(scope="module")
def detector(tiny_model_dir: Path) -> Florence2Detector:
    return Florence2Detector(tiny_model_dir, options=OPTIONS)


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (90 + 10 * i, 120, 3), dtype=np.uint8) for i in range(n)]


def inside(region_box: tuple[float, float, float, float], frame: np.ndarray) -> bool:
    x1, y1, x2, y2 = region_box
    return 0 <= x1 <= x2 <= frame.shape[1] and 0 <= y1 <= y2 <= frame.shape[0]


@pytest.mark.parametrize(("task", "phrase"), [(DENSE, None), (GROUNDING, "scratch"), (GROUNDING, "dark oil spot")])
def test_every_frame_gets_its_regions_inside_it_with_scores_in_the_unit_interval(
        detector: Florence2Detector, task: object, phrase: str | None) -> None:
    shown = frames(3)
    answers = detector.run_task(shown, task, phrase)  # type: ignore[arg-type]
    assert len(answers) == 3
    for frame, regions in zip(shown, answers, strict=True):
        assert all(inside(r.box, frame) and 0.0 <= r.score <= 1.0 for r in regions)
        assert all(r.label == phrase for r in regions) if phrase else all(r.label for r in regions)
    assert detector.run_task([], task, phrase) == []  # type: ignore[arg-type]


def test_torch_fast_and_the_calibrated_wrapper_run_region_tasks_like_torch_eager(
        tiny_model_dir: Path, detector: Florence2Detector) -> None:
    fast = FastFlorence2Detector(tiny_model_dir, options=OPTIONS)
    shown = frames(2)
    expected = detector.run_task(shown, GROUNDING, "hole")
    assert fast.run_task(shown, GROUNDING, "hole") == expected
    assert run_task_on(CalibratedDetector(fast, ScoreCalibration()), shown, GROUNDING, "hole") == expected


def test_od_and_bad_phrases_are_refused(detector: Florence2Detector) -> None:
    with pytest.raises(TaskError, match="not a region task"):
        detector.run_task(frames(1), OD)
    with pytest.raises(TaskError, match="needs a phrase"):
        detector.run_task(frames(1), GROUNDING)
