"""Measuring a tiny model: one-to-one same-class matching, and greedy answers on the frames it was trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.capture.synthetic import SyntheticFrame
from agent.detections import Detections
from finetune.tiny_train.evaluation import evaluate_frames, generate_texts, match_count

CLASSES = ("scratch", "hole", "stain")


def _dets(boxes: list[list[float]], ids: list[int], size: int = 100) -> Detections:
    return Detections(np.asarray(boxes, dtype=np.float32), ids, np.ones(len(ids)), CLASSES, (size, size))


def test_matching_needs_the_right_class_and_iou_at_least_half() -> None:
    truth = _dets([[0, 0, 10, 10], [50, 50, 70, 70]], [0, 1])
    assert match_count(_dets([[0, 0, 10, 10], [50, 50, 70, 70]], [0, 1]), truth) == 2
    assert match_count(_dets([[0, 0, 10, 10]], [1]), truth) == 0
    assert match_count(_dets([[0, 0, 10, 30]], [0]), truth) == 0  # IoU 1/3
    assert match_count(_dets([[0, 0, 10, 10], [1, 0, 10, 10]], [0, 0]), truth) == 1  # one-to-one


@pytest.mark.slow
def test_trained_tiny_model_reproduces_each_frames_own_boxes(overfit: tuple[Path, list[SyntheticFrame]]) -> None:
    model_dir, frames = overfit
    result = evaluate_frames(model_dir, frames)
    assert result.ground_truth >= 6
    assert result.recall == 1.0, result.to_dict()
    assert result.precision == 1.0, result.to_dict()


@pytest.mark.slow
def test_trained_tiny_model_answers_depend_on_the_image(overfit: tuple[Path, list[SyntheticFrame]]) -> None:
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    model_dir, frames = overfit
    model = Florence2ForConditionalGeneration.from_pretrained(model_dir).eval()
    texts = generate_texts(model, AutoProcessor.from_pretrained(model_dir), [f.image for f in frames])
    assert len(set(texts)) == len(frames)
