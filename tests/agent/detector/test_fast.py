"""torch-fast: the same tokens, boxes and scores as torch-eager, decoded on the grammar's slice of the vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agent.detections import Detections
from agent.detector.base import DetectorError
from agent.detector.factory import create_detector
from agent.detector.fast import FastDecoder, FastFlorence2Detector
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.greedy import DecodeLimits

FREE = DetectorOptions(max_new_tokens=40)
FORCED = DetectorOptions(max_new_tokens=40, min_boxes=4, max_boxes=4)


def random_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rng.integers(64, 300), rng.integers(64, 300), 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module", params=[FREE, FORCED], ids=["free", "forced-4-boxes"])
def pair(request: pytest.FixtureRequest, tiny_model_dir: Path) -> tuple[Florence2Detector, FastFlorence2Detector]:
    return Florence2Detector(tiny_model_dir, options=request.param), FastFlorence2Detector(
        tiny_model_dir, options=request.param)


def assert_same_detections(expected: list[Detections], actual: list[Detections], score_tol: float) -> None:
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert a.labels == e.labels
        np.testing.assert_array_equal(a.xyxy, e.xyxy)
        np.testing.assert_allclose(a.score, e.score, atol=score_tol)


@pytest.mark.parametrize("batch", [1, 4])
def test_tokens_equal_torch_eager(pair: tuple[Florence2Detector, FastFlorence2Detector], batch: int) -> None:
    eager, fast = pair
    pixels = eager.preprocess(random_frames(batch, seed=batch))
    eager_tokens, _ = eager.generate(pixels)
    fast_tokens, _ = fast.generate(pixels)
    assert torch.equal(fast_tokens, eager_tokens)


@pytest.mark.parametrize("batch", [1, 4])
def test_boxes_and_scores_equal_torch_eager(pair: tuple[Florence2Detector, FastFlorence2Detector],
                                            batch: int) -> None:
    eager, fast = pair
    frames = random_frames(batch, seed=10 + batch)
    assert_same_detections(eager.detect(frames), fast.detect(frames), score_tol=1e-3)


@pytest.fixture(scope="module")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model at 64 px: FP16 on a CPU is slow, and the dtype, not the size, is under test."""
    from finetune.tiny import TinySpec, build_tiny_model

    return build_tiny_model(("scratch", "hole", "stain"), tmp_path_factory.mktemp("small") / "model",
                            TinySpec(image_size=64))


def decoded(detector: Florence2Detector, frames: list[np.ndarray]) -> tuple[torch.Tensor, list[Detections]]:
    """One pass: tokens and the detections made from them (as `detect` makes them)."""
    tokens, log_probs = detector.generate(detector.preprocess(frames))
    return tokens, [detector._to_detections(tokens[i].tolist(), log_probs[:, i], frames[i])
                    for i in range(len(frames))]


def test_fp16_torch_fast_equals_fp16_torch_eager(small_model_dir: Path) -> None:
    """The FP16 path the GPU runs (minus CUDA graphs and fused attention), on the CPU: same tokens, boxes, scores."""
    options = DetectorOptions(device="cpu", dtype="float16", max_new_tokens=12, min_boxes=1, max_boxes=1)
    eager = Florence2Detector(small_model_dir, options=options)
    fast = FastFlorence2Detector(small_model_dir, options=options)
    assert eager.model.dtype == fast.decoder.lm_weight.dtype == torch.float16
    frames = random_frames(2, seed=21)
    assert eager.preprocess(frames).dtype == torch.float16
    (eager_tokens, eager_dets), (fast_tokens, fast_dets) = decoded(eager, frames), decoded(fast, frames)
    assert torch.equal(fast_tokens, eager_tokens)
    assert_same_detections(eager_dets, fast_dets, score_tol=1e-3)


def test_an_unknown_dtype_is_refused_naming_it(tiny_model_dir: Path) -> None:
    with pytest.raises(DetectorError, match="dtype 'bfloat8' is not one of auto, float16, float32"):
        FastFlorence2Detector(tiny_model_dir, options=DetectorOptions(dtype="bfloat8"))


def test_forced_box_counts_are_honoured(tiny_model_dir: Path) -> None:
    fast = FastFlorence2Detector(tiny_model_dir, options=FORCED)
    assert [len(d) for d in fast.detect(random_frames(3, seed=3))] == [4, 4, 4]


def test_decoding_stops_when_every_row_has_finished(tiny_model_dir: Path) -> None:
    options = DetectorOptions(max_new_tokens=60, min_boxes=1, max_boxes=1)
    fast = FastFlorence2Detector(tiny_model_dir, options=options)
    tokens, log_probs = fast.generate(fast.preprocess(random_frames(2)))
    eos = fast.grammar.eos_id
    assert tokens.shape[1] < 60 and log_probs.shape[0] == tokens.shape[1]
    assert all(eos in row for row in tokens.tolist()) and eos in tokens[:, -1].tolist()


def test_lm_head_is_sliced_to_the_grammar_vocabulary(tiny_model_dir: Path) -> None:
    fast = FastFlorence2Detector(tiny_model_dir, options=FREE)
    full = fast.model.get_output_embeddings().weight
    assert fast.decoder.lm_weight.shape[0] == len(fast.grammar.allowed_ids) < full.shape[0]
    assert torch.equal(fast.decoder.lm_weight, full[fast.grammar.allowed_ids])


def test_static_cache_step_equals_the_concat_step_the_onnx_graph_uses(tiny_model_dir: Path) -> None:
    fast = FastFlorence2Detector(tiny_model_dir, options=FREE)
    decoder: FastDecoder = fast.decoder
    torch.manual_seed(0)
    cross_k = torch.randn(len(decoder.layers), 2, decoder.heads, 7, decoder.head_dim)
    cross_v = torch.randn_like(cross_k)
    cache_k, cache_v = decoder.new_cache(2, 8, cross_k)
    past_k = past_v = cross_k[:, :, :, :0]
    with torch.inference_mode():
        for position, ids in enumerate([[2, 2], [0, 0], [300, 301]]):
            static = decoder(torch.tensor(ids), torch.tensor(position), cache_k, cache_v, cross_k, cross_v)
            concat, past_k, past_v = decoder.step_with_past(torch.tensor(ids), torch.tensor(position), past_k,
                                                            past_v, cross_k, cross_v)
            torch.testing.assert_close(static, concat, atol=1e-5, rtol=1e-5)


def test_the_factory_builds_torch_fast(tiny_model_dir: Path) -> None:
    detector = create_detector("torch-fast", tiny_model_dir, device="cpu", max_new_tokens=30)
    assert isinstance(detector, FastFlorence2Detector)
    assert len(detector.detect(random_frames(2))) == 2


def test_unconstrained_decoding_is_refused_with_the_reason(tiny_model_dir: Path) -> None:
    with pytest.raises(DetectorError, match="constrained must be True"):
        FastFlorence2Detector(tiny_model_dir, options=DetectorOptions(constrained=False))


def test_a_budget_beyond_the_decoder_positions_is_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(DetectorError, match="max_new_tokens 5000"):
        FastFlorence2Detector(tiny_model_dir, options=DetectorOptions(max_new_tokens=5000))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_new_tokens": 1}, "max_new_tokens must be >= 2"),
    ({"min_boxes": 3, "max_boxes": 2}, "got 3 and 2"),
    ({"min_boxes": -1}, "got -1"),
])
def test_bad_decode_limits_name_the_value(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecodeLimits(**kwargs)
