"""Florence2Detector: loads checkpoints the way users have them and always returns parseable, scored boxes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.detections import Detections
from agent.detector.base import DetectorError, FrameError
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from finetune.tiny import TinySpec, build_tiny_model
from tests.conftest import TINY_CLASSES
from tests.fixtures.models import make_adapter


@pytest.fixture(scope="module")
def detector(tiny_model_dir: Path) -> Florence2Detector:
    return Florence2Detector(tiny_model_dir, options=DetectorOptions(max_new_tokens=40))


def random_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rng.integers(64, 300), rng.integers(64, 300), 3), dtype=np.uint8) for _ in range(n)]


def test_random_model_output_parses_on_every_frame_with_scores_in_unit_interval(detector: Florence2Detector) -> None:
    frames = random_frames(52)
    results: list[Detections] = []
    for i in range(0, len(frames), 8):
        results += detector.detect(frames[i : i + 8])
    assert len(results) == len(frames)
    for frame, dets in zip(frames, results):
        assert dets.image_size == (frame.shape[1], frame.shape[0])
        assert ((dets.score >= 0) & (dets.score <= 1)).all()
        assert (dets.xyxy[:, 2] >= dets.xyxy[:, 0]).all() and (dets.xyxy[:, 3] >= dets.xyxy[:, 1]).all()
        assert (dets.xyxy[:, [0, 2]] <= frame.shape[1]).all() and (dets.xyxy[:, [1, 3]] <= frame.shape[0]).all()


def test_batched_and_single_frame_detection_agree(detector: Florence2Detector) -> None:
    frames = random_frames(3, seed=5)
    batched = detector.detect(frames)
    for frame, dets in zip(frames, batched):
        (single,) = detector.detect([frame])
        assert single.labels == dets.labels
        np.testing.assert_allclose(single.xyxy, dets.xyxy, atol=1e-3)
        np.testing.assert_allclose(single.score, dets.score, atol=1e-4)


def test_preprocessing_matches_the_checkpoints_own_image_processor(detector: Florence2Detector) -> None:
    frame = np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], (256, 1, 3))
    ours = detector.preprocess([frame])[0]
    rgb = frame[:, :, ::-1].copy()
    theirs = detector.processor(text=["<OD>"], images=[rgb], return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(ours, theirs.to(ours.dtype), atol=0.05)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10), np.uint8), "H x W x 3"),
        (np.zeros((10, 10, 4), np.uint8), "H x W x 3"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
    ],
)
def test_unusable_frames_are_rejected_with_the_reason(detector: Florence2Detector, frame, message) -> None:
    with pytest.raises(FrameError, match=message):
        detector.detect([np.zeros((10, 10, 3), np.uint8), frame])


def test_missing_directory_is_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match=str(tmp_path / "nope")):
        Florence2Detector(tmp_path / "nope")


def test_a_non_florence_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(DetectorError, match="'bert' checkpoint, not Florence-2"):
        Florence2Detector(tmp_path)


def test_a_directory_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="no config.json"):
        Florence2Detector(tmp_path)


def test_saved_tiny_model_and_adapter_load_from_disk_and_change_the_output(tiny_model_dir: Path,
                                                                           tmp_path: Path) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    frames = random_frames(4, seed=9)
    plain = Florence2Detector(tiny_model_dir, options=DetectorOptions(max_new_tokens=30))
    tuned = Florence2Detector(tiny_model_dir, adapter=adapter, options=DetectorOptions(max_new_tokens=30))
    assert tuned.version == f"{tiny_model_dir.name}+adapter"
    a, b = plain.detect(frames), tuned.detect(frames)
    assert any(x.labels != y.labels or not np.allclose(x.score, y.score) for x, y in zip(a, b))


def test_an_adapter_for_another_base_model_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    other = build_tiny_model(TINY_CLASSES, tmp_path / "other", TinySpec(d_model=64, ffn_dim=128))
    adapter = make_adapter(other, tmp_path / "adapter")
    with pytest.raises(DetectorError, match="does not fit base model"):
        Florence2Detector(tiny_model_dir, adapter=adapter)


def test_adapters_without_safetensors_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    shutil.move(adapter / "adapter_model.safetensors", adapter / "adapter_model.bin")
    with pytest.raises(DetectorError, match="only safetensors"):
        Florence2Detector(tiny_model_dir, adapter=adapter)
