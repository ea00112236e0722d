"""The old -> native name mapping, checked against every real name of microsoft/Florence-2-base's state dict
(tests/fixtures/florence2/remote_base_keys.txt) and the native model transformers builds for the published config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Florence2ForConditionalGeneration

from finetune.published import TEXT_VOCAB, published_config
from finetune.remote_layout import (
    ZERO_BUFFERS,
    is_remote_config,
    is_transposed,
    native_name,
    native_vision_config,
    old_name,
    old_vision_config,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "florence2" / "remote_base_keys.txt"


def remote_base_keys() -> dict[str, tuple[int, ...]]:
    rows = [line.split() for line in FIXTURE.read_text().splitlines() if line and not line.startswith("#")]
    return {name: tuple(int(d) for d in shape.split("x")) for name, shape in rows}


@pytest.fixture(scope="module")
def native_base() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = Florence2ForConditionalGeneration(published_config("base"))
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def expected_native_shape(old: str, shape: tuple[int, ...], vocab_rows: int) -> tuple[int, ...]:
    if is_transposed(old):
        return shape[::-1]
    return (vocab_rows, *shape[1:]) if shape[0] == TEXT_VOCAB else shape


def test_every_real_old_name_lands_on_a_native_tensor_of_the_right_shape(native_base: dict) -> None:
    vocab_rows = native_base["lm_head.weight"][0]
    for old, shape in remote_base_keys().items():
        if old in ZERO_BUFFERS:
            continue
        new = native_name(old)
        assert new in native_base, f"{old} -> {new}"
        assert native_base[new] == expected_native_shape(old, shape, vocab_rows), old


def test_every_native_tensor_comes_from_exactly_one_old_name(native_base: dict) -> None:
    mapped = [native_name(k) for k in remote_base_keys() if k not in ZERO_BUFFERS]
    assert len(mapped) == len(set(mapped))
    assert set(mapped) == set(native_base)


def test_the_fixture_has_the_published_base_layout() -> None:
    keys = remote_base_keys()
    assert len(keys) == 669  # 668 native tensors + final_logits_bias
    assert keys["image_projection"] == (1024, 768) and keys["language_model.lm_head.weight"] == (TEXT_VOCAB, 768)
    assert sum(".spatial_block.window_attn.fn.qkv.weight" in k for k in keys) == 12  # depths 1, 1, 9, 1


def test_inverse_mapping_round_trips_every_name() -> None:
    for old in remote_base_keys():
        if old not in ZERO_BUFFERS:
            assert old_name(native_name(old) or "") == old


@pytest.mark.parametrize(("old", "new"), [
    ("vision_tower.blocks.2.8.spatial_block.ffn.fn.net.fc2.lora_A.weight",
     "model.vision_tower.blocks.2.8.spatial_block.ffn.fc2.lora_A.weight"),
    ("language_model.lm_head.lora_B.weight", "lm_head.lora_B.weight"),
    ("language_model.model.decoder.layers.5.encoder_attn.q_proj.lora_A.weight",
     "model.language_model.decoder.layers.5.encoder_attn.q_proj.lora_A.weight"),
    ("vision_tower.blocks.0.0.channel_block.conv1.fn.dw.lora_B.weight",
     "model.vision_tower.blocks.0.0.channel_block.conv1.lora_B.weight"),
])
def test_lora_keys_keep_what_follows_the_module_name(old: str, new: str) -> None:
    assert native_name(old) == new


@pytest.mark.parametrize("name", ["vision_tower.norms.weight", "vision_tower.head.weight", "lm_head.weight",
                                  "model.language_model.shared.weight", "vision_tower.blocks.0.0.odd_block.x"])
def test_names_outside_the_old_layout_have_no_mapping(name: str) -> None:
    assert native_name(name) is None


def test_the_vision_config_converts_both_ways() -> None:
    native = published_config("large").vision_config.to_dict()
    old = old_vision_config(native)
    assert old["dim_embed"] == [256, 512, 1024, 2048] and is_remote_config({"vision_config": old})
    assert native_vision_config(old) == {k: native[k] for k in native_vision_config(old)}


def test_an_old_vision_config_without_its_embeddings_is_named() -> None:
    old = old_vision_config(published_config("base").vision_config.to_dict())
    del old["image_pos_embed"]
    with pytest.raises(ValueError, match="image_pos_embed"):
        native_vision_config(old)
