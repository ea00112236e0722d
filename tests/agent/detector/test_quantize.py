"""torch-fast with `quantize: int8-weight`: the int8 layer's arithmetic, both of its paths, what gets quantized, and
the detector's parity and accuracy against the unquantized one on the shipped (trained) demo model, on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from agent.capture.synthetic import SyntheticGenerator
from agent.detections import Detections
from agent.detector.base import DetectorError
from agent.detector.factory import create_detector
from agent.detector.fast import FastFlorence2Detector
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.quantize import KERNEL_MAX_ROWS, QUANTIZE_MODES, Int8Linear, has_int8_kernel, quantize_rows
from finetune.metrics import match_frame

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo"
needs_kernel = pytest.mark.skipif(not has_int8_kernel(torch.device("cpu")),
                                  reason="this torch has no CPU kernel for aten::_weight_int8pack_mm")


def test_rows_round_to_within_half_a_step_and_the_largest_weight_maps_to_127() -> None:
    weight = torch.randn(48, 80) * torch.linspace(0.01, 3.0, 48)[:, None]  # rows of very different ranges
    q, scale = quantize_rows(weight)
    assert q.dtype == torch.int8 and scale.shape == (48,)
    error = (weight - q.float() * scale[:, None]).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-7).all())
    assert torch.equal(q.abs().amax(dim=1), torch.full((48,), 127, dtype=torch.int8))


def test_an_all_zero_row_stays_zero() -> None:
    q, scale = quantize_rows(torch.zeros(2, 16))
    assert not bool(q.any()) and bool((scale > 0).all())


@pytest.mark.parametrize("rows", [1, KERNEL_MAX_ROWS, KERNEL_MAX_ROWS + 1, 300])
def test_the_int8_layer_matches_its_float_layer_within_the_rounding(rows: int) -> None:
    torch.manual_seed(rows)
    linear = nn.Linear(96, 40)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(rows, 96)
    with torch.no_grad():
        expected, actual = linear(x), layer(x)
    # each weight is off by at most scale/2, so each output by at most sum|x| * scale / 2
    bound = x.abs().sum(dim=1, keepdim=True) * layer.scale[None, :] / 2
    assert bool(((actual - expected).abs() <= bound + 1e-5).all())
    assert not torch.equal(actual, expected)  # it really is the int8 weight that ran


@needs_kernel
def test_the_kernel_path_equals_the_dequantize_path() -> None:
    torch.manual_seed(0)
    layer = Int8Linear(torch.randn(64, 128), torch.randn(64))
    x = torch.randn(2, 3, 128)  # 6 rows: the kernel's side of the rule
    assert layer.uses_kernel(6) and not layer.uses_kernel(KERNEL_MAX_ROWS + 1)
    with torch.no_grad():
        kernel = layer(x)
        layer.kernel = False
        dequantized = layer(x)
    assert kernel.shape == (2, 3, 64)
    torch.testing.assert_close(kernel, dequantized, atol=1e-4, rtol=1e-5)


def test_the_detector_quantizes_the_text_layers_and_the_sliced_lm_head(tiny_model_dir: Path) -> None:
    fast = FastFlorence2Detector(tiny_model_dir, options=DetectorOptions(device="cpu", quantize="int8-weight"))
    language = fast.model.model.language_model
    assert not [m for m in language.modules() if type(m) is nn.Linear]
    int8_layers = [m for m in language.modules() if isinstance(m, Int8Linear)]
    assert fast.quantized["layers"] == len(int8_layers) + 1  # + the sliced lm_head
    assert fast.decoder.lm_int8 is not None and fast.decoder.lm_weight.numel() == 0
    assert fast.decoder.lm_int8.out_features == len(fast.grammar.allowed_ids)
    assert fast.quantized["weight_mb_after"] < fast.quantized["weight_mb_before"] / 3  # fp32 -> int8 + scales
    vision = fast.model.model.vision_tower
    assert not [m for m in vision.modules() if isinstance(m, Int8Linear)]


def test_quantize_none_leaves_the_model_as_it_is(tiny_model_dir: Path) -> None:
    fast = FastFlorence2Detector(tiny_model_dir, options=DetectorOptions(device="cpu"))
    assert fast.quantized == {"mode": "none"} and fast.decoder.lm_int8 is None
    assert not [m for m in fast.model.modules() if isinstance(m, Int8Linear)]


@pytest.mark.parametrize("backend", ["torch-eager", "onnx"])
def test_backends_without_int8_weight_refuse_it_naming_both(tmp_path: Path, backend: str) -> None:
    with pytest.raises(DetectorError, match=f"quantize 'int8-weight' is not available on backend '{backend}'"):
        create_detector(backend, tmp_path, quantize="int8-weight")


def test_an_unknown_mode_is_refused_before_loading(tiny_model_dir: Path) -> None:
    with pytest.raises(DetectorError, match="quantize 'int4' is not available on backend 'torch-fast'"):
        FastFlorence2Detector(tiny_model_dir, options=DetectorOptions(quantize="int4"))
    assert QUANTIZE_MODES == ("none", "int8-weight")


def test_the_config_offers_exactly_the_detector_modes() -> None:
    from agent.config import ModelConfig

    assert tuple(ModelConfig.model_fields["quantize"].annotation.__args__) == QUANTIZE_MODES  # type: ignore[union-attr]


# ----- the trained demo model: int8 vs float, and both vs the truth ------------------------------------------------
@pytest.fixture(scope="module")
def demo_runs() -> tuple[list[Detections], list[Detections], list[Detections]]:
    """(truth, float detections, int8 detections) of 8 synthetic frames the demo model never saw."""
    frames = SyntheticGenerator(seed=4242, size=256).frames(8)
    images = [f.image for f in frames]
    float_run = FastFlorence2Detector(DEMO, options=DetectorOptions(device="cpu")).detect(images)
    int8 = FastFlorence2Detector(DEMO, options=DetectorOptions(device="cpu", quantize="int8-weight"))
    return [f.detections for f in frames], float_run, int8.detect(images)


def matched(truth: Detections, found: Detections, iou: float = 0.5) -> int:
    """Truth boxes found with the same label at IoU >= `iou` (greedy by score, each found box used once)."""
    return sum(g == p for g, p in match_frame(truth, found, iou).pairs)


def test_int8_finds_the_same_defects_with_nearly_the_same_scores(demo_runs: tuple[list[Detections], ...]) -> None:
    _, float_run, int8_run = demo_runs
    assert [sorted(d.labels) for d in int8_run] == [sorted(d.labels) for d in float_run]
    for f, q in zip(float_run, int8_run):
        assert matched(f, q, iou=0.8) == len(f)  # the same boxes, give or take a location bin
        np.testing.assert_allclose(np.sort(q.score), np.sort(f.score), atol=0.02)


def test_int8_is_as_accurate_as_float_on_unseen_frames(demo_runs: tuple[list[Detections], ...]) -> None:
    truth, float_run, int8_run = demo_runs
    total = sum(len(t) for t in truth)
    float_hits = sum(matched(t, f) for t, f in zip(truth, float_run))
    int8_hits = sum(matched(t, q) for t, q in zip(truth, int8_run))
    assert float_hits >= 0.8 * total, "the demo model itself should find these defects"
    assert int8_hits >= float_hits - 1
    assert sum(len(q) for q in int8_run) <= sum(len(f) for f in float_run) + 1  # no extra false boxes


def test_the_eager_backend_never_silently_ignores_quantize(tiny_model_dir: Path) -> None:
    with pytest.raises(DetectorError, match="int8-weight needs backend 'torch-fast'"):
        Florence2Detector(tiny_model_dir, options=DetectorOptions(quantize="int8-weight"))
