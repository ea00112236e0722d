"""Region tasks on the torch backends (torch-eager, and torch-fast through its underlying HF model): the prompt
(`<DENSE_REGION_CAPTION>`, or `<CAPTION_TO_PHRASE_GROUNDING>` + the phrase, expanded by Florence's processor as in
training), HF greedy `generate` under the task's grammar (`agent/detector/task_grammars.py`), answers scored into
`Region`s. The `<OD>` path (`Florence2Detector.generate`, the fast decoders) is not involved: the daemon serves `<OD>`
exactly as before, and a region task costs what HF `generate` costs (no sliced vocabulary, no CUDA graph).

Scores are the model's raw confidences (`task_grammars.score_regions`); the score calibration of `<OD>` boxes is per
class and does not apply to captions or phrases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from agent.detector.constraints import GrammarError, OdLogitsProcessor
from agent.detector.task_grammars import DenseGrammar, GroundingGrammar, RegionGrammar, score_regions
from agent.detector.tasks import DENSE, GROUNDING, Region, Task, TaskError, check_phrase


class TorchDetector(Protocol):
    """What a region task needs of a torch backend (`Florence2Detector` and its `torch-fast` subclass)."""

    processor: Any
    options: Any  # DetectorOptions: max_new_tokens, loc_window
    task_grammars: dict[str, Any]

    def preprocess(self, frames: Sequence[npt.NDArray[np.uint8]]) -> torch.Tensor: ...

    def prompt_ids_for(self, prompt: str) -> torch.Tensor: ...

    def generate_from(self, prompt_ids: torch.Tensor, pixel_values: torch.Tensor, processors: list[Any]
                      ) -> tuple[torch.Tensor, torch.Tensor]: ...


def run_region_task(detector: TorchDetector, frames: Sequence[npt.NDArray[np.uint8]], task: Task,
                    phrase: str | None = None) -> list[list[Region]]:
    """One list of regions per BGR frame, in order; a bad task or phrase is a `TaskError` naming it."""
    phrase = check_phrase(task, phrase)
    if not frames:
        return []
    grammar = _grammar(detector, task, phrase)
    pixels = detector.preprocess(frames)
    processor = OdLogitsProcessor(grammar, detector.options.max_new_tokens)
    tokens, log_probs = detector.generate_from(detector.prompt_ids_for(task.token + phrase), pixels, [processor])
    window = detector.options.loc_window
    return [score_regions(tokens[i].tolist(), log_probs[:, i], grammar, window, (f.shape[1], f.shape[0]))
            for i, f in enumerate(frames)]


def _grammar(detector: TorchDetector, task: Task, phrase: str) -> RegionGrammar:
    tokenizer = detector.processor.tokenizer
    if task is DENSE:
        if DENSE.token not in detector.task_grammars:  # ~the whole vocabulary decoded once: keep it
            detector.task_grammars[DENSE.token] = DenseGrammar(tokenizer)
        grammar: RegionGrammar = detector.task_grammars[DENSE.token]
        return grammar
    if task is GROUNDING:
        try:
            return GroundingGrammar(tokenizer, phrase)
        except GrammarError as exc:
            raise TaskError(str(exc)) from None
    raise TaskError(f"task {task.name!r} is not a region task: <OD> runs through detect()")
