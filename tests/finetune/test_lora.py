"""LoRA on native Florence-2: the real module names, safe adapters only, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finetune.lora import LoraError, LoraSettings, add_lora, check_safe_adapter, load_lora, lora_state, save_adapter


def fresh(model_dir: Path) -> torch.nn.Module:
    from transformers import Florence2ForConditionalGeneration

    return Florence2ForConditionalGeneration.from_pretrained(model_dir)


def adapted_modules(model: torch.nn.Module) -> set[str]:
    return {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A." in name}


def test_default_lora_adapts_the_language_model_attention_and_mlp_only(tiny_model_dir: Path) -> None:
    model = add_lora(fresh(tiny_model_dir), LoraSettings())
    adapted = adapted_modules(model)
    leaves = {name.rsplit(".", 1)[-1] for name in adapted}
    assert leaves == {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}
    assert all("language_model" in name for name in adapted)
    assert any("encoder_attn" in name for name in adapted)  # cross-attention too
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert model.peft_config["default"].r == 8 and model.peft_config["default"].lora_alpha == 16


def test_vision_lora_adds_the_davit_qkv_proj_and_mlp(tiny_model_dir: Path) -> None:
    adapted = adapted_modules(add_lora(fresh(tiny_model_dir), LoraSettings(vision=True)))
    vision = {name.rsplit(".", 1)[-1] for name in adapted if "vision_tower" in name}
    assert vision == {"qkv", "proj", "fc1", "fc2"}


def test_lm_head_lora_is_refused_when_the_head_is_tied_to_the_embeddings(tiny_model_dir: Path) -> None:
    with pytest.raises(LoraError, match="tied"):
        add_lora(fresh(tiny_model_dir), LoraSettings(lm_head=True))


@pytest.mark.parametrize(("field", "value"), [("r", 0), ("alpha", 0), ("dropout", 1.0)])
def test_bad_settings_name_the_value(field: str, value: float) -> None:
    with pytest.raises(LoraError, match=f"{field}={value}"):
        LoraSettings(**{field: value})  # type: ignore[arg-type]


def test_a_saved_adapter_loads_back_with_the_same_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = add_lora(fresh(tiny_model_dir), LoraSettings(r=4))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    saved = save_adapter(model, tmp_path / "adapter")
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "adapter_config.json",
                                                       "adapter_model.safetensors"]
    loaded = load_lora(fresh(tiny_model_dir), saved)
    before, after = lora_state(model), lora_state(loaded)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for n, p in loaded.named_parameters() if "lora_" in n)


def test_corrupt_or_pickled_adapters_are_refused_with_the_file_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    adapter = save_adapter(add_lora(fresh(tiny_model_dir), LoraSettings(r=2)), tmp_path / "adapter")
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(LoraError, match="adapter_model.safetensors are corrupt"):
        load_lora(fresh(tiny_model_dir), adapter)
    weights.unlink()
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(LoraError, match=r"adapter_model.bin: .bin weights are refused"):
        check_safe_adapter(adapter)


def test_an_adapter_for_another_base_model_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from finetune.tiny import TinySpec, build_tiny_model

    other = build_tiny_model(["a", "b"], tmp_path / "other", TinySpec(d_model=64, heads=2, ffn_dim=128))
    adapter = save_adapter(add_lora(fresh(other), LoraSettings(r=2)), tmp_path / "adapter")
    with pytest.raises(LoraError, match="does not fit this base model"):
        load_lora(fresh(tiny_model_dir), adapter)


def test_whole_parts_train_every_weight_of_the_part_and_keep_lora_out_of_it(tiny_model_dir: Path) -> None:
    model = add_lora(fresh(tiny_model_dir), LoraSettings(vision=True, whole=("vision_tower", "multi_modal_projector")))
    assert not any("vision_tower" in name for name in adapted_modules(model))  # the copy trains, no LoRA inside
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    base = fresh(tiny_model_dir)
    for part in ("vision_tower", "multi_modal_projector"):
        weights = {n for n, _ in getattr(base.model, part).named_parameters()}
        carried = {n.split(".modules_to_save.default.", 1)[1] for n in trainable if f"{part}.modules_to_save" in n}
        assert carried == weights
    assert any("language_model" in name and "lora_" in name for name in trainable)


def test_a_whole_part_survives_save_load_and_merge(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = add_lora(fresh(tiny_model_dir), LoraSettings(r=4, whole=("vision_tower",)))
    copy = model.base_model.model.model.vision_tower.modules_to_save["default"]
    with torch.no_grad():
        copy.convs[0].conv.weight.add_(0.5)
    trained = copy.convs[0].conv.weight.detach().clone()
    saved = save_adapter(model, tmp_path / "adapter")
    merged = load_lora(fresh(tiny_model_dir), saved, trainable=False).merge_and_unload()  # what the detector serves
    assert torch.equal(merged.model.vision_tower.convs[0].conv.weight, trained)
    assert not torch.equal(fresh(tiny_model_dir).model.vision_tower.convs[0].conv.weight, trained)


def test_an_unknown_whole_part_is_refused_by_name() -> None:
    with pytest.raises(LoraError, match="language_model"):
        LoraSettings(whole=("language_model",))
