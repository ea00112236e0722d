"""Old remote-code layouts made from our own models by the inverse mapping (`finetune.remote_layout.old_name`): a
checkpoint directory as `microsoft/Florence-2-*` ship it, and PEFT adapters as maestro/autodistill save them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Florence2ForConditionalGeneration

from finetune.published import TEXT_VOCAB, bart_layout_tokenizer, padded_vocab
from finetune.remote_layout import old_name, old_vision_config
from finetune.tiny import TinySpec, build_config, build_processor, save_model

CLASSES = ("scratch", "hole", "stain")
SMALL = TinySpec(image_size=64, patch_strides=(4, 2, 1))  # an 8 x 8 token grid: seconds on two cores
TIED = {"model.language_model.shared.weight", "model.language_model.encoder.embed_tokens.weight",
        "model.language_model.decoder.embed_tokens.weight", "lm_head.weight"}
# maestro's LoRA targets (roboflow/maestro florence_2 checkpoints.py); "o_proj", "linear", "Conv2d" match nothing
MAESTRO_TARGETS = ["q_proj", "o_proj", "k_proj", "v_proj", "linear", "Conv2d", "lm_head", "fc2"]


def small_native_model(out: Path, seed: int = 0) -> Path:
    """A tiny-sized native Florence-2 with the published vocabulary layout (BART ids, 51,328 rows)."""
    torch.manual_seed(seed)
    tokenizer = bart_layout_tokenizer()
    config = build_config(tokenizer, SMALL)
    config.text_config.vocab_size = padded_vocab(len(tokenizer))
    model = Florence2ForConditionalGeneration(config)
    return save_model(model, build_processor(tokenizer, SMALL), CLASSES, out)


def old_state_dict(model: Florence2ForConditionalGeneration, vocab: int = TEXT_VOCAB) -> dict[str, torch.Tensor]:
    """Native weights under their old names: vocabulary rows cut to the old 51,289, image_projection transposed,
    BART's zero final_logits_bias added; every tensor its own copy (safetensors refuses shared memory)."""
    old = {"language_model.final_logits_bias": torch.zeros(1, vocab)}
    for name, tensor in model.state_dict().items():
        key = old_name(name)
        assert key is not None, name
        value = tensor[:vocab] if name in TIED else tensor
        old[key] = (value.t() if key == "image_projection" else value).detach().clone().contiguous()
    return old


def write_remote_checkpoint(native_dir: Path, out: Path) -> Path:
    """`native_dir` written back in the remote-code layout: weights, config.json with auto_map, BART tokenizer
    without the Florence tokens, preprocessor_config.json with auto_map, classes.txt."""
    model = Florence2ForConditionalGeneration.from_pretrained(native_dir, dtype=torch.float32)
    out.mkdir(parents=True)
    save_file(old_state_dict(model), str(out / "model.safetensors"))
    text = model.config.text_config.to_dict()
    text.update(vocab_size=TEXT_VOCAB, num_beams=3, no_repeat_ngram_size=3, forced_bos_token_id=0)
    config = {"model_type": "florence2", "architectures": ["Florence2ForConditionalGeneration"],
              "auto_map": {"AutoConfig": "configuration_florence2.Florence2Config",
                           "AutoModelForCausalLM": "modeling_florence2.Florence2ForConditionalGeneration"},
              "vocab_size": TEXT_VOCAB, "projection_dim": model.config.vision_config.projection_dim,
              "text_config": text, "vision_config": old_vision_config(model.config.vision_config.to_dict())}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    bart_layout_tokenizer(florence_tokens=False).save_pretrained(out)
    write_remote_preprocessor(native_dir, out)
    (out / "classes.txt").write_text((native_dir / "classes.txt").read_text())
    return out


def write_remote_preprocessor(native_dir: Path, out: Path) -> None:
    from transformers import AutoProcessor

    AutoProcessor.from_pretrained(native_dir).image_processor.save_pretrained(out)
    path = out / "preprocessor_config.json"
    data = json.loads(path.read_text())
    data.update(auto_map={"AutoProcessor": "processing_florence2.Florence2Processor"},
                processor_class="Florence2Processor")
    path.write_text(json.dumps(data, indent=2))


def old_adapter_state(native: dict[str, torch.Tensor], vocab: int = TEXT_VOCAB) -> dict[str, torch.Tensor]:
    """A native PEFT adapter state dict under the old names, lm_head's lora_B (and the copy of lm_head PEFT saves
    beside it) cut to the old vocabulary."""
    prefix = "base_model.model."
    old = {}
    for key, tensor in native.items():
        inner = old_name(key[len(prefix):])
        assert inner is not None, key
        value = tensor[:vocab] if key.endswith(("lm_head.lora_B.weight", "lm_head.base_layer.weight")) else tensor
        old[prefix + inner] = value.detach().clone().contiguous()
    return old


def native_lora(native_dir: Path, out: Path, vocab: int = TEXT_VOCAB, seed: int = 1) -> Path:
    """A LoRA on maestro's targets with random (non-zero) B matrices, saved by PEFT; lm_head's rows past the old
    vocabulary zero, as a converted old adapter has them."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = Florence2ForConditionalGeneration.from_pretrained(native_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=MAESTRO_TARGETS))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
                if ".lm_head." in name:
                    param[vocab:] = 0
    peft_model.save_pretrained(str(out))
    return out


def write_old_adapter(native_adapter: Path, out: Path) -> Path:
    """`native_adapter` as maestro saves one for the remote-code model (old names, 51,289 lm_head rows)."""
    from safetensors.torch import load_file

    out.mkdir(parents=True)
    save_file(old_adapter_state(load_file(str(native_adapter / "adapter_model.safetensors"))),
              str(out / "adapter_model.safetensors"))
    config = json.loads((native_adapter / "adapter_config.json").read_text())
    config.update(target_modules=MAESTRO_TARGETS, task_type="CAUSAL_LM",
                  base_model_name_or_path="microsoft/Florence-2-base-ft", revision="refs/pr/20")
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out
