"""Published Florence-2 architectures with random weights: configs, tokenizer and processor as published (fast, no
weights), and one base-sized build that every backend loads and decodes alike (slow)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import Florence2ForConditionalGeneration
from typer.testing import CliRunner

from agent.cli import app
from agent.detections import Detections
from agent.detector.fast import FastFlorence2Detector
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.onnx import OnnxDetector
from finetune.export import export_onnx_precisions
from finetune.published import (
    VARIANTS,
    bart_layout_tokenizer,
    build_published,
    parameter_count,
    published_config,
    published_generation_config,
    published_processor,
)
from finetune.tiny import can_spell
from tests.agent.detector.test_onnx import assert_close_detections

CLASSES = ["scratch", "hole", "stain"]
# Published sizes (config.json of florence-community/Florence-2-*, same as microsoft/Florence-2-*'s):
# (vision embed_dim, heads = groups, d_model, layers per side, attention heads, ffn, positions)
SIZES = {"base": ([128, 256, 512, 1024], [4, 8, 16, 32], 768, 6, 12, 3072, 1024),
         "large": ([256, 512, 1024, 2048], [8, 16, 32, 64], 1024, 12, 16, 4096, 4096)}
PUBLISHED_IDS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 50264, "<od>": 50265, "</od>": 50266,
                 "<ocr>": 50267, "</ocr>": 50268, "<loc_0>": 50269, "<loc_500>": 50769, "<loc_999>": 51268,
                 "<cap>": 51269, "<sep>": 51279, "<poly>": 51286, "<and>": 51288, "<image>": 51289}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_configs_have_the_published_sizes_and_ids(variant: str) -> None:
    dims, heads, d_model, layers, attention, ffn, positions = SIZES[variant.removesuffix("-ft")]
    config = published_config(variant)
    text, vision = config.text_config, config.vision_config
    assert (text.vocab_size, text.d_model, text.encoder_layers, text.decoder_layers) == (51328, d_model, layers, layers)
    assert (text.encoder_attention_heads, text.decoder_ffn_dim, text.max_position_embeddings) == (attention, ffn,
                                                                                                   positions)
    assert (text.bos_token_id, text.pad_token_id, text.eos_token_id, text.decoder_start_token_id) == (0, 1, 2, 2)
    assert list(vision.embed_dim) == dims and list(vision.num_heads) == heads == list(vision.num_groups)
    assert list(vision.depths) == [1, 1, 9, 1] and vision.window_size == 12 and vision.projection_dim == d_model
    assert config.image_token_id == 51289


def test_parameter_counts_are_the_published_ones() -> None:
    """0.23B and 0.77B (the model cards' numbers, truncated to two decimals); -ft variants share the sizes."""
    base, large = parameter_count("base"), parameter_count("large")
    assert int(base / 1e7) == 23 and int(large / 1e7) == 77
    assert parameter_count("base-ft") == base and parameter_count("large-ft") == large


def test_large_shapes_on_the_meta_device() -> None:
    with torch.device("meta"):
        model = Florence2ForConditionalGeneration(published_config("large"))
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert shapes["lm_head.weight"] == (51328, 1024)
    assert shapes["model.multi_modal_projector.image_projection.weight"] == (1024, 2048)
    assert shapes["model.vision_tower.blocks.3.0.channel_block.ffn.fc1.weight"] == (8192, 2048)
    assert shapes["model.language_model.decoder.embed_positions.weight"] == (4098, 1024)
    assert sum(".layers." in n and n.endswith("fc1.weight") for n in shapes) == 24


def test_generation_settings_are_the_published_ones() -> None:
    config = published_generation_config()
    assert (config.num_beams, config.no_repeat_ngram_size, config.early_stopping) == (3, 3, True)
    assert (config.forced_bos_token_id, config.forced_eos_token_id, config.decoder_start_token_id) == (0, 2, 2)


def test_the_tokenizer_has_the_published_ids() -> None:
    tokenizer = bart_layout_tokenizer()
    assert len(tokenizer) == 51290 and tokenizer.image_token_id == 51289
    assert dict(zip(PUBLISHED_IDS, tokenizer.convert_tokens_to_ids(list(PUBLISHED_IDS)))) == PUBLISHED_IDS
    assert tokenizer.model_max_length == 1024


@pytest.mark.parametrize("name", ["scratch", "rolled-in_scale", "Fehler ä", "日本 ✓", "<unused_900>x"])
def test_any_class_name_round_trips_and_never_meets_a_filler_id(name: str) -> None:
    tokenizer = bart_layout_tokenizer()
    ids = tokenizer(name, add_special_tokens=False).input_ids
    assert can_spell(tokenizer, name)
    assert all(i < 600 for i in ids)  # the trained BPE part: fillers (up to 50263) are unreachable from text


def test_the_processor_has_the_published_image_settings() -> None:
    image = published_processor(bart_layout_tokenizer()).image_processor
    assert (image.size["height"], image.size["width"], image.image_seq_length) == (768, 768, 577)
    assert list(image.image_mean) == [0.485, 0.456, 0.406] and list(image.image_std) == [0.229, 0.224, 0.225]
    assert image.do_center_crop is False


def test_an_unknown_variant_is_named() -> None:
    with pytest.raises(ValueError, match="unknown Florence-2 variant 'huge'; choose one of base, base-ft"):
        published_config("huge")
    result = CliRunner().invoke(app, ["model", "published", "--variant", "huge", "--out", "/nonexistent/x"])
    assert result.exit_code == 2 and "unknown Florence-2 variant" in result.output


# ----- one base-sized build, every backend (each decodes the frame once) -------------------------------------------
ONE_BOX = DetectorOptions(max_new_tokens=12, min_boxes=1, max_boxes=1)


@dataclass
class Decoded:
    detections: list[Detections]
    tokens: np.ndarray
    log: list[str] = field(default_factory=list)


def decode(detector: Any, frames: list[np.ndarray]) -> Decoded:
    """`detect` once, keeping the tokens its `generate` produced (one forward pass per backend)."""
    captured: dict[str, Any] = {}
    generate = detector.generate

    def keep_tokens(pixels: Any) -> Any:
        captured["tokens"], log_probs = generate(pixels)
        return captured["tokens"], log_probs

    detector.generate = keep_tokens
    try:
        return Decoded(detector.detect(frames), np.asarray(captured["tokens"]))
    finally:
        del detector.generate


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_published("base", tmp_path_factory.mktemp("published") / "base")


@pytest.fixture(scope="module")
def frame() -> list[np.ndarray]:
    return [np.random.default_rng(3).integers(0, 256, (300, 400, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def eager(base_dir: Path, frame: list[np.ndarray]) -> tuple[Florence2Detector, Decoded]:
    logger, handler = logging.getLogger("agent.detector.florence2"), Recorded()
    level, disabled = logger.level, logger.disabled  # another test's logging setup may have changed either
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.disabled = False
    try:
        detector = Florence2Detector(base_dir, class_names=CLASSES, options=ONE_BOX)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled
    decoded = decode(detector, frame)
    decoded.log = handler.lines
    return detector, decoded


@pytest.mark.slow
def test_the_build_writes_the_published_files(base_dir: Path) -> None:
    config = json.loads((base_dir / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == 51328 and config["image_token_id"] == 51289
    assert config["text_config"]["num_beams"] == 3 and config["text_config"]["forced_bos_token_id"] == 0
    generation = json.loads((base_dir / "generation_config.json").read_text())
    assert (generation["num_beams"], generation["no_repeat_ngram_size"], generation["forced_eos_token_id"]) == (3, 3, 2)
    processor = json.loads((base_dir / "processor_config.json").read_text())
    assert processor["image_processor"]["image_seq_length"] == 577
    assert processor["image_processor"]["image_mean"] == [0.485, 0.456, 0.406]
    with safe_open(str(base_dir / "model.safetensors"), "pt") as handle:
        assert handle.get_tensor("model.language_model.shared.weight").dtype == torch.float16
    assert not list(base_dir.glob("*.bin")) and not (base_dir / "classes.txt").exists()


@pytest.mark.slow
def test_torch_eager_overrides_the_published_generation_settings(eager: tuple[Florence2Detector, Decoded]) -> None:
    detector, decoded = eager
    assert any("num_beams 3 -> 1" in line and "forced_bos_token_id 0 -> None" in line for line in decoded.log)
    assert detector.overridden_generation == {"num_beams": 3, "early_stopping": True, "no_repeat_ngram_size": 3,
                                              "forced_bos_token_id": 0, "forced_eos_token_id": 2}
    (boxes,) = decoded.detections
    assert len(boxes) == 1 and boxes.labels[0] in CLASSES


@pytest.mark.slow
def test_torch_fast_decodes_what_torch_eager_does(base_dir: Path, eager: tuple[Florence2Detector, Decoded],
                                                  frame: list[np.ndarray]) -> None:
    fast = decode(FastFlorence2Detector(base_dir, class_names=CLASSES, options=ONE_BOX), frame)
    expected = eager[1]
    np.testing.assert_array_equal(fast.tokens, expected.tokens)
    (want,), (got,) = expected.detections, fast.detections
    assert got.labels == want.labels
    np.testing.assert_array_equal(got.xyxy, want.xyxy)
    np.testing.assert_allclose(got.score, want.score, atol=1e-3)


@pytest.mark.slow
def test_onnx_fp32_fp16_int8_agree_with_torch_eager(base_dir: Path, eager: tuple[Florence2Detector, Decoded],
                                                    frame: list[np.ndarray], tmp_path: Path) -> None:
    exports = export_onnx_precisions(base_dir, {p: tmp_path / p for p in ("fp32", "fp16", "int8")},
                                     class_names=CLASSES)
    expected = eager[1]
    fp32 = decode(OnnxDetector(exports["fp32"], options=ONE_BOX), frame)
    np.testing.assert_array_equal(fp32.tokens, expected.tokens)
    for precision in ("fp16", "int8"):
        detector = OnnxDetector(exports[precision], options=ONE_BOX)
        assert detector.precision == precision
        assert_close_detections(expected.detections, detector.detect(frame))
