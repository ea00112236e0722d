"""Florence-2's tasks besides `<OD>`: their names, what they return, and the one way to ask a detector for them.

The daemon serves `<OD>` only (`Detector.detect`). Two more tasks share the weights and the `<loc_N>` dialect:

- `dense-region-caption` (`<DENSE_REGION_CAPTION>`): free-text captions, each with one box;
- `phrase-grounding` (`<CAPTION_TO_PHRASE_GROUNDING>` + a phrase): the boxes of what the phrase names.

A backend that can run them has `run_task(frames, task, phrase)` (the torch backends: `agent/detector/task_runner.py`);
`run_task_on` asks any detector and turns a missing capability into `TaskUnsupported`. This module imports no torch,
so the station can name the result types without loading a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from agent.detector.base import DetectorError

MAX_PHRASE_CHARS = 64


@dataclass(frozen=True)
class Task:
    """One Florence-2 task: its command-line name, its short name (training mix), its prompt token."""

    name: str
    short: str
    token: str
    needs_phrase: bool = False


OD = Task("od", "od", "<OD>")
DENSE = Task("dense-region-caption", "dense", "<DENSE_REGION_CAPTION>")
GROUNDING = Task("phrase-grounding", "grounding", "<CAPTION_TO_PHRASE_GROUNDING>", needs_phrase=True)
TASKS: tuple[Task, ...] = (OD, DENSE, GROUNDING)


class TaskError(ValueError):
    """A task request that cannot be run: unknown task, missing or bad phrase (the message names the value)."""


class TaskUnsupported(DetectorError):
    """The detector (its backend) cannot run this task; the message says which backend and what can."""


@dataclass(frozen=True)
class Region:
    """One answer of a region task: its text (a caption, or the phrase), its box in frame pixels, a confidence."""

    label: str
    box: tuple[float, float, float, float]
    score: float

    def to_json(self, decimals: int = 1) -> dict[str, Any]:
        return {"label": self.label, "box": [round(float(v), decimals) for v in self.box],
                "score": round(float(self.score), 4)}


def task_named(name: str) -> Task:
    """The task called `name` (its command-line name, short name or prompt token); else `TaskError` listing them."""
    for task in TASKS:
        if name in (task.name, task.short, task.token):
            return task
    raise TaskError(f"unknown task {name!r}; known: {', '.join(t.name for t in TASKS)} "
                    f"(or {', '.join(t.short for t in TASKS)})")


def task_by_token(token: str) -> Task | None:
    return next((task for task in TASKS if task.token == token), None)


def check_phrase(task: Task, phrase: str | None) -> str:
    """The phrase a task is asked with ("" for tasks without one); a missing, empty or unwritable one is a
    `TaskError` naming it."""
    if not task.needs_phrase:
        if phrase:
            raise TaskError(f"task {task.name!r} takes no phrase (got {phrase!r})")
        return ""
    text = (phrase or "").strip()
    if not text:
        raise TaskError(f"task {task.name!r} needs a phrase: what to find, e.g. 'scratch'")
    if len(text) > MAX_PHRASE_CHARS or any(c in text for c in "<>") or not text.isprintable():
        raise TaskError(f"phrase {text[:80]!r}: at most {MAX_PHRASE_CHARS} printable characters, no '<' or '>'")
    return text


def run_task_on(detector: Any, frames: Sequence[npt.NDArray[np.uint8]], task: Task, phrase: str | None = None
                ) -> list[list[Region]]:
    """`detector.run_task(...)`, or `TaskUnsupported` when its backend has no such capability."""
    runner = getattr(detector, "run_task", None)
    if runner is None:
        raise TaskUnsupported(f"the served detector ({type(detector).__name__}) runs <OD> only: it cannot run "
                              f"{task.name}; the torch backends (torch-eager, torch-fast) can")
    regions: list[list[Region]] = runner(frames, task, phrase)
    return regions


def regions_as_detections(regions: Sequence[Region], image_size: tuple[int, int]) -> Detections:
    """Regions as `Detections` whose classes are their texts, in first-seen order (to draw them like boxes)."""
    names = tuple(dict.fromkeys(region.label for region in regions)) or ("region",)
    xyxy = np.asarray([region.box for region in regions], dtype=np.float32).reshape(-1, 4)
    return Detections.from_labels([r.label for r in regions], xyxy, names, image_size,
                                  score=[r.score for r in regions])
