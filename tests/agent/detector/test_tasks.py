"""The region tasks' names, phrase checks, result type, and asking a detector that cannot run them."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detector.tasks import (
    DENSE,
    GROUNDING,
    OD,
    Region,
    TaskError,
    TaskUnsupported,
    check_phrase,
    regions_as_detections,
    run_task_on,
    task_named,
)


@pytest.mark.parametrize(("name", "task"), [("od", OD), ("<OD>", OD), ("dense-region-caption", DENSE),
                                            ("dense", DENSE), ("phrase-grounding", GROUNDING),
                                            ("<CAPTION_TO_PHRASE_GROUNDING>", GROUNDING)])
def test_a_task_is_found_by_any_of_its_names(name: str, task: object) -> None:
    assert task_named(name) is task


def test_an_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(TaskError, match=r"unknown task 'segment'; known: od, dense-region-caption, phrase-grounding"):
        task_named("segment")


@pytest.mark.parametrize(("task", "phrase", "message"), [
    (GROUNDING, None, "needs a phrase"), (GROUNDING, "   ", "needs a phrase"),
    (GROUNDING, "scratch<loc_3>", r"'scratch<loc_3>': at most 64 printable characters, no '<' or '>'"),
    (GROUNDING, "x" * 65, "at most 64"), (GROUNDING, "tab\there", "printable"),
    (DENSE, "scratch", r"'dense-region-caption' takes no phrase \(got 'scratch'\)"),
])
def test_bad_phrases_are_refused_naming_them(task: object, phrase: str | None, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        check_phrase(task, phrase)  # type: ignore[arg-type]


def test_a_phrase_is_trimmed_and_tasks_without_one_take_none() -> None:
    assert check_phrase(GROUNDING, "  oil spot ") == "oil spot"
    assert check_phrase(DENSE, None) == check_phrase(OD, "") == ""


def test_a_detector_without_region_tasks_says_so() -> None:
    class OdOnly:
        def detect(self, frames: list[np.ndarray]) -> list[object]:
            return []

    with pytest.raises(TaskUnsupported, match="OdOnly.* runs <OD> only: it cannot run phrase-grounding"):
        run_task_on(OdOnly(), [np.zeros((8, 8, 3), np.uint8)], GROUNDING, "scratch")


def test_regions_become_detections_whose_classes_are_their_texts() -> None:
    regions = [Region("dark scratch", (1, 2, 30, 40), 0.5), Region("hole", (5, 5, 9, 9), 0.25),
               Region("dark scratch", (50, 2, 60, 40), 0.75)]
    dets = regions_as_detections(regions, (100, 80))
    assert dets.class_names == ("dark scratch", "hole") and dets.labels == ["dark scratch", "hole", "dark scratch"]
    assert dets.score.tolist() == [0.5, 0.25, 0.75] and dets.xyxy[1].tolist() == [5, 5, 9, 9]
    assert len(regions_as_detections([], (100, 80))) == 0
    assert regions[0].to_json() == {"label": "dark scratch", "box": [1.0, 2.0, 30.0, 40.0], "score": 0.5}
