"""The tiny PaliGemma 2: a hub-like checkpoint built offline, with Gemma's kind of tokenizer and PaliGemma's tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, PaliGemmaForConditionalGeneration

from agent.detector.paligemma.dialect import LOC_TOKENS
from finetune.paligemma.tiny import TinyPaliSpec, build_tiny_paligemma, build_tokenizer


def test_the_checkpoint_is_siglip_plus_gemma2_in_the_save_pretrained_layout(tiny_paligemma_dir: Path) -> None:
    config = json.loads((tiny_paligemma_dir / "config.json").read_text())
    assert config["model_type"] == "paligemma"
    assert config["vision_config"]["model_type"] == "siglip_vision_model"
    assert config["text_config"]["model_type"] == "gemma2"
    names = {p.name for p in tiny_paligemma_dir.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "processor_config.json", "classes.txt"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)  # safetensors only


def test_the_tokenizer_has_the_location_and_image_tokens_and_spells_the_prompt(tiny_paligemma_dir: Path) -> None:
    tokenizer = AutoProcessor.from_pretrained(tiny_paligemma_dir).tokenizer
    assert type(tokenizer).__name__ == "GemmaTokenizer"
    ids = tokenizer.convert_tokens_to_ids(list(LOC_TOKENS))
    assert len(set(ids)) == 1024 and tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(tokenizer.image_token_id) == "<image>"
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("detect scratch ; hole\n", add_special_tokens=False).input_ids)
    assert pieces == ["detect", "▁scratch", "▁;", "▁hole", "<0x0A>"]  # words, never merged across a space


def test_any_text_is_spelt_through_byte_fallback() -> None:
    tokenizer = build_tokenizer(["hole"])
    ids = tokenizer("Kratzer ä", add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == "Kratzer ä"


def test_embeddings_are_large_enough_for_a_confident_token(tiny_paligemma_dir: Path) -> None:
    model = PaliGemmaForConditionalGeneration.from_pretrained(tiny_paligemma_dir)
    rows = model.get_input_embeddings().weight
    hidden_norm = rows.shape[1] ** 0.5  # what Gemma's final norm leaves a hidden state with
    best_logit = hidden_norm * rows.norm(dim=1).median()
    assert best_logit > 10  # with transformers' 0.02 init it would be ~1.3: no answer could ever be sure
    assert torch.equal(model.lm_head.weight, rows)  # tied, as in PaliGemma


@pytest.mark.parametrize(("classes", "spec", "message"), [
    (["a", "a"], TinyPaliSpec(), "appear more than once"),
    (["a;b"], TinyPaliSpec(), "class name 'a;b'"),
    (["a"], TinyPaliSpec(image_size=100), "--image-size 100 is not a multiple of the patch size 16"),
])
def test_bad_requests_are_refused_naming_the_value(tmp_path: Path, classes: list[str], spec: TinyPaliSpec,
                                                   message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_tiny_paligemma(classes, tmp_path / "m", spec)
    assert not (tmp_path / "m").exists()
