"""The paligemma2 family's detectors: registered, loaded from a model directory, always parseable scored boxes, the
fast backend equal to the eager one, and clear errors for what they do not do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from agent.detections import Detections
from agent.detector.base import Detector, DetectorError
from agent.detector.factory import create_detector
from agent.detector.families import FAMILIES, family_of
from agent.detector.florence2 import DetectorOptions
from agent.detector.paligemma.detector import PaliGemma2Detector
from agent.detector.paligemma.dialect import AnswerError
from agent.detector.paligemma.fast import FastPaliGemma2Detector
from tests.conftest import TINY_CLASSES


@pytest.fixture(scope="module")
def eager(tiny_paligemma_dir: Path) -> Detector:
    return create_detector("torch-eager", tiny_paligemma_dir, max_new_tokens=30)


@pytest.fixture(scope="module")
def fast(tiny_paligemma_dir: Path) -> Detector:
    return create_detector("torch-fast", tiny_paligemma_dir, max_new_tokens=30)


def random_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rng.integers(48, 200), rng.integers(48, 200), 3), dtype=np.uint8) for _ in range(n)]


def test_the_family_claims_paligemma_checkpoints_with_its_backends(tiny_paligemma_dir: Path) -> None:
    assert family_of(tiny_paligemma_dir) == "paligemma2"
    assert set(FAMILIES["paligemma2"].backends) == {"torch-eager", "torch-fast", "onnx"}
    assert json.loads((tiny_paligemma_dir / "config.json").read_text())["text_config"]["model_type"] == "gemma2"


def test_factory_builds_each_backend(eager: Detector, fast: Detector) -> None:
    assert type(eager) is PaliGemma2Detector and isinstance(fast, FastPaliGemma2Detector)
    assert eager.class_names == TINY_CLASSES and eager.version == "model"


def test_random_model_output_parses_on_every_frame_with_scores_in_unit_interval(eager: Detector) -> None:
    frames = random_frames(12)
    results: list[Detections] = []
    for i in range(0, len(frames), 4):
        results += eager.detect(frames[i : i + 4])
    assert len(results) == len(frames) and sum(len(d) for d in results) > 0
    for frame, dets in zip(frames, results):
        assert dets.image_size == (frame.shape[1], frame.shape[0])
        assert ((dets.score > 0) & (dets.score <= 1)).all()
        assert (dets.xyxy[:, 2] >= dets.xyxy[:, 0]).all() and (dets.xyxy[:, 3] >= dets.xyxy[:, 1]).all()
        assert (dets.xyxy[:, [0, 2]] <= frame.shape[1]).all() and (dets.xyxy[:, [1, 3]] <= frame.shape[0]).all()


def test_fast_backend_writes_the_same_boxes_and_scores_as_generate(eager: Detector, fast: Detector) -> None:
    frames = random_frames(6, seed=3)
    for a, b in zip(eager.detect(frames), fast.detect(frames), strict=True):
        assert a.labels == b.labels
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
        np.testing.assert_allclose(a.score, b.score, rtol=1e-4, atol=1e-6)


def test_batched_and_single_frame_detection_agree(eager: Detector) -> None:
    frames = random_frames(3, seed=5)
    for frame, dets in zip(frames, eager.detect(frames)):
        (single,) = eager.detect([frame])
        assert single.labels == dets.labels
        np.testing.assert_allclose(single.score, dets.score, rtol=1e-4)


def test_forced_box_counts_reach_the_detector(tiny_paligemma_dir: Path) -> None:
    detector = PaliGemma2Detector(tiny_paligemma_dir, options=DetectorOptions(max_new_tokens=40, min_boxes=3,
                                                                              max_boxes=3))
    assert [len(d) for d in detector.detect(random_frames(2, seed=9))] == [3, 3]


def test_an_unconstrained_answer_that_does_not_parse_is_an_error_quoting_it(tiny_paligemma_dir: Path) -> None:
    detector = PaliGemma2Detector(tiny_paligemma_dir, options=DetectorOptions(constrained=False, max_new_tokens=8))
    tokens, _ = detector.generate(detector.preprocess(random_frames(1, seed=1)))
    text = detector.processor.tokenizer.decode(tokens[0].tolist(), skip_special_tokens=False)
    with pytest.raises(AnswerError, match="not a PaliGemma detection answer") as caught:
        detector.detect(random_frames(1, seed=1))
    assert f"not a PaliGemma detection answer: {text!r}" in str(caught.value)


def test_cpu_runs_in_float32_and_cuda_would_use_bfloat16(eager: Detector) -> None:
    # Gemma 2 overflows in fp16: the family asks for bf16 on a GPU (no GPU here to run it on)
    assert PaliGemma2Detector.cuda_dtype is torch.bfloat16
    assert isinstance(eager, PaliGemma2Detector) and eager.dtype is torch.float32


def test_onnx_backend_says_this_family_has_no_export(tiny_paligemma_dir: Path) -> None:
    with pytest.raises(DetectorError, match="ONNX export is not implemented for the paligemma2 family .* serve it "
                                            "with backend torch-eager, torch-fast"):
        create_detector("onnx", tiny_paligemma_dir)


def test_a_class_name_with_the_separator_is_refused_naming_it(tiny_paligemma_dir: Path) -> None:
    with pytest.raises(DetectorError, match="class name 'oil ; spot'"):
        create_detector("torch-eager", tiny_paligemma_dir, class_names=["hole", "oil ; spot"])


def test_a_florence_checkpoint_is_not_loaded_as_paligemma(tiny_model_dir: Path) -> None:
    with pytest.raises(DetectorError, match="'florence2' checkpoint, not PaliGemma 2"):
        PaliGemma2Detector(tiny_model_dir)


def test_pickle_weights_are_never_loaded(tiny_paligemma_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_paligemma_dir, copy)
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(DetectorError, match="could not load PaliGemma 2 from"):
        create_detector("torch-eager", copy)


def test_both_backends_ask_paligemmas_own_detection_prompt_not_florences(eager: Detector, fast: Detector) -> None:
    """The prompt is a hook of the Florence-2 detector it builds on; a rename there once made PaliGemma ask `<OD>`."""
    for detector in (eager, fast):
        prompt = detector.processor.tokenizer.decode(detector._prompt_ids[0])  # type: ignore[attr-defined]
        assert "detect scratch ; hole ; stain" in prompt and "<OD>" not in prompt, prompt
