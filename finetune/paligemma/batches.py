"""Training data -> PaliGemma inputs: one sequence per frame, `prefix + answer`, as the model reads it at inference.

    prefix = <image> x N, <bos>, detect a ; b ; c, newline      (token type 0: attended both ways, no loss)
    answer = the grammar's tokens for the frame's boxes, <eos>  (token type 1: causal, the labels)

The answer ids come from `PaliGemmaGrammar.encode`, so a model is trained on exactly the token sequences the
constrained decoder accepts. Frames, augmentation and pixel preprocessing are Florence-2's `Batcher`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from agent.detections import Detections
from agent.detector.paligemma.dialect import detect_prompt, to_bins
from agent.detector.paligemma.grammar import PaliGemmaGrammar
from finetune.data.dataset import Sample
from finetune.losses import IGNORE_INDEX
from finetune.train.batches import Batcher
from finetune.train.config import TrainConfig


def answer_boxes(dets: Detections, rng: np.random.Generator, shuffle: bool) -> list[tuple[int, Sequence[int]]]:
    """(class id, y1 x1 y2 x2 bins) per box: reading order, or a random order with `shuffle`."""
    ordered = dets[rng.permutation(len(dets))] if shuffle and len(dets) > 1 else dets.sorted_raster()
    return [(int(c), [int(b) for b in row]) for c, row in zip(ordered.class_id, to_bins(ordered))]


def pack(prefix: torch.Tensor, answers: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded `prefix + answer` rows with their attention mask, token types and labels."""
    length = len(prefix) + max(len(a) for a in answers)
    ids = torch.full((len(answers), length), pad_id, dtype=torch.long)
    types = torch.ones((len(answers), length), dtype=torch.long)
    labels = torch.full((len(answers), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(answers), length), dtype=torch.long)
    for row, answer in enumerate(answers):
        end = len(prefix) + len(answer)
        ids[row, : len(prefix)], ids[row, len(prefix) : end] = prefix, torch.tensor(answer)
        types[row, : len(prefix)] = 0
        labels[row, len(prefix) : end] = torch.tensor(answer)
        mask[row, :end] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}


class PaliGemmaBatcher(Batcher):
    """Samples -> model inputs: pixels, prefix + answer ids, attention mask, token types, labels."""

    def __init__(self, processor: Any, config: TrainConfig, grammar: PaliGemmaGrammar) -> None:
        super().__init__(processor, config)
        self.grammar = grammar
        dummy = np.zeros((8, 8, 3), np.uint8)
        prompt = processor.image_token + detect_prompt(grammar.class_names)
        self.prefix = processor(text=[prompt], images=[dummy], return_tensors="pt").input_ids[0]

    def __call__(self, samples: Sequence[Sample], rng: np.random.Generator, task: str | None = None,
                 augment_rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """Model inputs (`task` is always detection here); augmented given `augment_rng` and `config.augment`."""
        from agent.detector.florence2 import preprocess_frames

        frames, boxes = self.frames_and_boxes(samples, augment_rng)
        pixels = torch.from_numpy(preprocess_frames(frames, self.processor.image_processor, self.size))
        answers = [self.grammar.encode(answer_boxes(dets, rng, self.config.shuffle_boxes)) for dets in boxes]
        return {"pixel_values": pixels, **pack(self.prefix, answers, self.grammar.pad_id)}
