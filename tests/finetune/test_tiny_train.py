"""Specification of the tiny-model training recipe: its pieces, and that a trained tiny model really localises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agent.capture.synthetic import SyntheticFrame, SyntheticGenerator
from agent.detections import Detections, box_iou
from finetune.tiny import TinySpec, build_tiny_model
from finetune.tiny_train import (
    TinyTrainConfig,
    cell_targets,
    evaluate_frames,
    flip_frame,
    generate_texts,
    lr_factor,
    match_count,
    read_classes,
    sequence_loss,
    soft_loc_targets,
    train_tiny,
)

CLASSES = ("scratch", "hole", "stain")


def _dets(boxes: list[list[float]], ids: list[int], size: int = 100) -> Detections:
    return Detections(np.asarray(boxes, dtype=np.float32), ids, np.ones(len(ids)), CLASSES, (size, size))


# ----- pieces -----------------------------------------------------------------------------------------------------
def test_cell_targets_mark_cells_whose_centre_is_inside_a_box() -> None:
    classes, boxes = cell_targets(_dets([[0, 0, 50, 25]], [2]), grid=4)
    grid = classes.reshape(4, 4)
    assert grid[0, :2].tolist() == [3, 3] and grid[0, 2:].tolist() == [0, 0]
    assert grid[1:].sum() == 0
    assert boxes.reshape(4, 4, 4)[0, 0].tolist() == [0, 0, 500, 250]
    assert (boxes.reshape(4, 4, 4)[1:] == -1).all()


def test_a_defect_smaller_than_a_cell_still_owns_the_cell_of_its_centre() -> None:
    classes, _ = cell_targets(_dets([[60, 60, 64, 64]], [1]), grid=4)
    assert classes.reshape(4, 4)[2, 2] == 2
    assert (classes > 0).sum() == 1


def test_flip_mirrors_pixels_and_boxes_together() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[10:20, 0:30] = 255
    flipped, dets = flip_frame(image, _dets([[0, 10, 30, 20]], [0]), horizontal=True, vertical=True)
    x1, y1, x2, y2 = (int(v) for v in dets.xyxy[0])
    assert (x1, y1, x2, y2) == (70, 80, 100, 90)
    assert flipped[y1:y2, x1:x2].min() == 255 and flipped.sum() == image.sum()


def test_soft_loc_targets_are_normalised_gaussians_peaking_on_the_target_bin() -> None:
    soft = soft_loc_targets(4.0, bins=50)
    assert torch.allclose(soft.sum(1), torch.ones(50))
    assert int(soft[20].argmax()) == 20 and soft[20, 21] > soft[20, 25] > soft[20, 40]
    assert torch.equal(soft_loc_targets(0.0, bins=5), torch.eye(5))


def test_sequence_loss_with_one_hot_targets_is_cross_entropy_ignoring_padding() -> None:
    torch.manual_seed(0)
    loc_ids = torch.arange(10, 20)
    logits = torch.randn(2, 3, 20)
    labels = torch.tensor([[1, 12, -100], [15, 2, 3]])
    expected = F.cross_entropy(logits.view(-1, 20), labels.view(-1), ignore_index=-100)
    got = sequence_loss(logits, labels, loc_ids, soft_loc_targets(0.0, bins=10))
    assert torch.allclose(got, expected, atol=1e-5)


def test_sequence_loss_charges_a_near_miss_less_than_a_far_miss() -> None:
    loc_ids = torch.arange(0, 100)
    soft = soft_loc_targets(4.0, bins=100)
    labels = torch.tensor([[50]])
    near, far = torch.zeros(1, 1, 100), torch.zeros(1, 1, 100)
    near[0, 0, 52] = far[0, 0, 90] = 10.0
    assert sequence_loss(near, labels, loc_ids, soft) < sequence_loss(far, labels, loc_ids, soft)


def test_learning_rate_warms_up_then_decays() -> None:
    factors = [lr_factor(s, warmup=10, total=100) for s in range(100)]
    assert factors[0] < factors[9] == pytest.approx(1.0)
    assert factors[50] < factors[10] and factors[-1] >= 0.05


def test_matching_needs_the_right_class_and_iou_at_least_half() -> None:
    truth = _dets([[0, 0, 10, 10], [50, 50, 70, 70]], [0, 1])
    assert match_count(_dets([[0, 0, 10, 10], [50, 50, 70, 70]], [0, 1]), truth) == 2
    assert match_count(_dets([[0, 0, 10, 10]], [1]), truth) == 0
    assert match_count(_dets([[0, 0, 10, 30]], [0]), truth) == 0  # IoU 1/3
    assert match_count(_dets([[0, 0, 10, 10], [1, 0, 10, 10]], [0, 0]), truth) == 1  # one-to-one


def test_missing_class_list_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "classes.txt")):
        read_classes(tmp_path)


def test_frames_with_another_class_list_are_rejected(tmp_path: Path) -> None:
    model_dir = build_tiny_model(["a", "b"], tmp_path / "m", TinySpec(image_size=64, patch_strides=(4, 2, 2)))
    frames = SyntheticGenerator(size=64).frames(1)
    with pytest.raises(ValueError, match="classes"):
        train_tiny(model_dir, frames, TinyTrainConfig(steps=1))


# ----- the recipe works -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_trained_tiny_model_is_saved_as_a_plain_florence2_checkpoint(overfit: tuple[Path, list[SyntheticFrame]]
                                                                      ) -> None:
    from safetensors import safe_open

    model_dir, _ = overfit
    with safe_open(str(model_dir / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any("cell_" in key for key in keys)  # the training-only heads are not saved
    assert read_classes(model_dir) == CLASSES


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


@pytest.mark.slow
def test_trained_tiny_model_localises_through_the_detector(overfit: tuple[Path, list[SyntheticFrame]]) -> None:
    from agent.detector.florence2 import Florence2Detector

    model_dir, frames = overfit
    found = Florence2Detector(model_dir).detect([f.image for f in frames])
    for frame, dets in zip(frames, found):
        iou = box_iou(dets.xyxy, frame.detections.xyxy) * (dets.class_id[:, None] == frame.detections.class_id)
        assert (iou.max(axis=0) >= 0.5).all(), (frame.index, dets.to_json(), frame.detections.to_json())
