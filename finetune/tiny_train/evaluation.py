"""How well a tiny model localises: plain greedy `<OD>` generation matched against ground truth at an IoU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from agent.detections import Detections, box_iou
from agent.detector.loc import from_loc_text
from finetune.tiny_train.batches import TASK, TinyBatcher, TrainFrame, grid_size


@dataclass(frozen=True)
class EvalResult:
    """Greedy-generation quality on frames with ground truth: matches at IoU >= `iou` with the right class."""

    frames: int
    true_positives: int
    predictions: int
    ground_truth: int
    distinct_answers: int
    unparsed_groups: int
    iou: float

    @property
    def precision(self) -> float:
        return self.true_positives / self.predictions if self.predictions else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.ground_truth if self.ground_truth else 0.0

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "precision": round(self.precision, 4), "recall": round(self.recall, 4)}


def generate_texts(model: Any, processor: Any, images: Sequence[npt.NDArray[np.uint8]], batch_size: int = 16,
                   max_new_tokens: int = 64) -> list[str]:
    """Plain greedy `<OD>` generation (no grammar constraints) -> decoded text per BGR frame."""
    batcher = TinyBatcher(processor, grid_size(processor), flip=False)
    texts: list[str] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        prompt = processor(text=[TASK] * len(chunk), images=[np.zeros((8, 8, 3), np.uint8)] * len(chunk),
                           return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(input_ids=prompt.input_ids, attention_mask=prompt.attention_mask,
                                 pixel_values=batcher.pixels(chunk), max_new_tokens=max_new_tokens,
                                 do_sample=False, num_beams=1)
        texts.extend(processor.batch_decode(out, skip_special_tokens=False))
    return texts


def match_count(pred: Detections, truth: Detections, iou: float = 0.5) -> int:
    """Greedy one-to-one matches (highest IoU first) of same-class boxes with IoU >= `iou`."""
    if not len(pred) or not len(truth):
        return 0
    overlaps = box_iou(pred.xyxy, truth.xyxy) * (pred.class_id[:, None] == truth.class_id[None, :])
    matches = 0
    while overlaps.size and overlaps.max() >= iou:
        i, j = np.unravel_index(int(overlaps.argmax()), overlaps.shape)
        overlaps[i, :] = 0
        overlaps[:, j] = 0
        matches += 1
    return matches


def evaluate_frames(model_dir: Path, frames: Sequence[TrainFrame], iou: float = 0.5) -> EvalResult:
    """Load a saved model and measure greedy generation on `frames` (precision/recall at `iou`)."""
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(model_dir)
    model = Florence2ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    return evaluate_model(model, processor, frames, iou)


def evaluate_model(model: Any, processor: Any, frames: Sequence[TrainFrame], iou: float = 0.5) -> EvalResult:
    texts = generate_texts(model, processor, [f.image for f in frames])
    tp = predicted = truth = unparsed = 0
    for frame, text in zip(frames, texts):
        pred = from_loc_text(text, frame.detections.class_names, frame.detections.image_size, strict=False)
        unparsed += max(0, text.count("<loc_") // 4 - len(pred))
        tp += match_count(pred, frame.detections, iou)
        predicted += len(pred)
        truth += len(frame.detections)
    return EvalResult(len(frames), tp, predicted, truth, len(set(texts)), unparsed, iou)
