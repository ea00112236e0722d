"""Generation settings that fight the <OD> grammar (the published checkpoints' beams, n-gram ban, forced BOS/EOS)
are overridden at load, said once in the log, and decoding is what it is without them."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import GenerationConfig

from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.generation import GRAMMAR_NEUTRAL, conflicting_settings, describe, neutralize

PUBLISHED = {"num_beams": 3, "no_repeat_ngram_size": 3, "early_stopping": True, "forced_bos_token_id": 0,
             "forced_eos_token_id": 2}
OPTIONS = DetectorOptions(max_new_tokens=40)


def test_the_published_settings_are_all_found_and_neutralized() -> None:
    config = GenerationConfig(bos_token_id=0, eos_token_id=2, **PUBLISHED)
    assert conflicting_settings(config) == PUBLISHED
    assert neutralize(config) == PUBLISHED
    assert conflicting_settings(config) == {}
    assert (config.num_beams, config.no_repeat_ngram_size, config.forced_eos_token_id) == (1, 0, None)
    assert config.bos_token_id == 0 and config.eos_token_id == 2  # ids the grammar needs are left alone


def test_a_plain_config_is_left_alone() -> None:
    assert neutralize(GenerationConfig(max_new_tokens=64, do_sample=False, num_beams=1)) == {}


def test_the_log_line_says_what_became_what() -> None:
    assert describe({"num_beams": 3, "forced_eos_token_id": 2}) == "num_beams 3 -> 1, forced_eos_token_id 2 -> None"
    assert set(PUBLISHED) <= set(GRAMMAR_NEUTRAL)


@pytest.fixture(scope="module")
def published_settings_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with the published generation_config.json."""
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("gen") / "model"))
    path = model_dir / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **PUBLISHED}))
    return model_dir


def test_decoding_under_published_settings_equals_decoding_without(tiny_model_dir: Path,
                                                                   published_settings_dir: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    plain = Florence2Detector(tiny_model_dir, options=OPTIONS)
    with caplog.at_level(logging.INFO, logger="agent.detector.florence2"):
        published = Florence2Detector(published_settings_dir, options=OPTIONS)
    assert "no_repeat_ngram_size 3 -> 0" in caplog.text and "forced_eos_token_id 2 -> None" in caplog.text
    assert plain.overridden_generation == {"forced_eos_token_id": 2}  # the tiny builder's BART config has it too
    rng = np.random.default_rng(4)
    pixels = plain.preprocess([rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)])
    tokens, scores = published.generate(pixels)
    expected_tokens, expected_scores = plain.generate(pixels)
    assert torch.equal(tokens, expected_tokens)
    torch.testing.assert_close(scores, expected_scores, equal_nan=True)


def test_without_the_override_the_ngram_ban_would_change_the_boxes(published_settings_dir: Path) -> None:
    """Why the override exists: the random tiny model repeats <loc> runs, which a trigram ban forbids."""
    detector = Florence2Detector(published_settings_dir, options=OPTIONS)
    rng = np.random.default_rng(4)
    pixels = detector.preprocess([rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)])
    expected, _ = detector.generate(pixels)
    detector.model.generation_config.no_repeat_ngram_size = 3
    banned, _ = detector.generate(pixels)
    assert not torch.equal(banned, expected)
