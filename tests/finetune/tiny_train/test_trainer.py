"""The tiny recipe's trainer: schedule, class list checks, and that a trained tiny model is a plain checkpoint that
localises through the detector."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.capture.synthetic import SyntheticFrame, SyntheticGenerator
from agent.detections import box_iou
from agent.modeldir import read_class_names
from finetune.tiny import TinySpec, build_tiny_model
from finetune.tiny_train.trainer import TinyTrainConfig, lr_factor, model_class_names, train_tiny

CLASSES = ("scratch", "hole", "stain")


def test_learning_rate_warms_up_then_decays() -> None:
    factors = [lr_factor(s, warmup=10, total=100) for s in range(100)]
    assert factors[0] < factors[9] == pytest.approx(1.0)
    assert factors[50] < factors[10] and factors[-1] >= 0.05


def test_missing_class_list_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "classes.txt")):
        model_class_names(tmp_path)


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
    assert read_class_names(model_dir) == CLASSES


@pytest.mark.slow
def test_trained_tiny_model_localises_through_the_detector(overfit: tuple[Path, list[SyntheticFrame]]) -> None:
    from agent.detector.florence2 import Florence2Detector

    model_dir, frames = overfit
    found = Florence2Detector(model_dir).detect([f.image for f in frames])
    for frame, dets in zip(frames, found):
        iou = box_iou(dets.xyxy, frame.detections.xyxy) * (dets.class_id[:, None] == frame.detections.class_id)
        assert (iou.max(axis=0) >= 0.5).all(), (frame.index, dets.to_json(), frame.detections.to_json())
