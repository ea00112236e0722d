"""`edge-inspect model convert`: an old remote-code Florence-2 checkpoint (`microsoft/Florence-2-*` layout) -> a native
`save_pretrained` directory (safetensors) that every backend loads.

Steps (as transformers' own conversion script does them, without running the old remote code): rename the weights
(`finetune.remote_layout`), transpose `image_projection`, drop BART's all-zero `final_logits_bias`, build the native
config, add the Florence tokens and `<image>` to the old BART tokenizer (the old processor added the Florence ones
at run time), then `resize_token_embeddings(51290, pad_to_multiple_of=64)` -> 51,328 rows. Only safetensors are
read; a directory with pickle weights only (`pytorch_model.bin`) is refused with the command that converts it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tokenizers import AddedToken
from transformers import (
    BartConfig,
    BartTokenizerFast,
    CLIPImageProcessorPil,
    Florence2Config,
    Florence2ForConditionalGeneration,
    Florence2Processor,
    Florence2VisionConfig,
    GenerationConfig,
)

from agent.modeldir import CLASS_FILE, THRESHOLDS_FILE
from finetune.published import FLORENCE_TOKENS, IMAGE_TOKEN, PAD_TO_MULTIPLE, PUBLISHED_GENERATION
from finetune.remote_layout import (
    ZERO_BUFFERS,
    is_remote_config,
    is_transposed,
    native_name,
    native_vision_config,
)
from finetune.tiny import POST_PROCESSOR_CONFIG

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
CARRIED_FILES = (CLASS_FILE, THRESHOLDS_FILE, "calibration.json")  # ours, next to the weights: kept as they are
# shared input embeddings, encoder/decoder copies and the output head: one tensor, tied in both layouts
TIED = ("model.language_model.shared.weight", "model.language_model.encoder.embed_tokens.weight",
        "model.language_model.decoder.embed_tokens.weight", "lm_head.weight")


class ConvertError(ValueError):
    """A checkpoint or adapter that cannot be converted; the message names the file, key or value at fault."""


def pickle_advice(directory: Path, names: list[str]) -> str:
    return (f"{directory} holds pickle weights only ({', '.join(names)}); they are never loaded here (unpickling can "
            "run code). Convert them to safetensors once, in an environment you trust, e.g. `python -c \"import "
            "torch; from safetensors.torch import save_file; sd = torch.load('pytorch_model.bin', map_location="
            "'cpu', weights_only=True); save_file({k: v.clone().contiguous() for k, v in sd.items()}, "
            "'model.safetensors')\"` (for an adapter: adapter_model.bin -> adapter_model.safetensors), then run "
            "the command again")


def pickle_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """`model.safetensors` or the shards its index names; never a pickle file."""
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        files = sorted({directory / name for name in json.loads(index.read_text())["weight_map"].values()})
    elif pickles := pickle_files(directory):
        raise ConvertError(pickle_advice(directory, pickles))
    else:
        raise ConvertError(f"{directory} has no model.safetensors (nor a sharded index)")
    weights: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            weights.update(load_file(str(path)))
        except (SafetensorError, OSError) as exc:
            raise ConvertError(f"{path} is not readable safetensors: {exc}") from exc
    return weights


def read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConvertError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path} is not valid JSON: {exc}") from exc
    return data


def listed(keys: list[str], limit: int = 8) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ----- weights ------------------------------------------------------------------------------------------------------
def native_state_dict(old: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and transpose `image_projection`); refuses unknown names and a non-zero `final_logits_bias`."""
    nonzero = [k for k in ZERO_BUFFERS if k in old and bool(old[k].any())]
    if nonzero:
        raise ConvertError(f"{listed(nonzero)} is not all zeros: the native model has no such bias, converting would "
                           "change the model's outputs")
    unknown = sorted(k for k in old if k not in ZERO_BUFFERS and native_name(k) is None)
    if unknown:
        raise ConvertError(f"not a remote-code Florence-2 weight layout: no rule for {listed(unknown)}")
    return {native_name(k) or k: (v.t().contiguous() if is_transposed(k) else v)
            for k, v in old.items() if k not in ZERO_BUFFERS}


def fill_tied(weights: dict[str, torch.Tensor]) -> None:
    """A file saved with tied tensors de-duplicated keeps only some of them: every member gets the one present."""
    present = [weights[name] for name in TIED if name in weights]
    if not present:
        raise ConvertError(f"the checkpoint has none of the tied embedding / lm_head weights ({listed(list(TIED))})")
    for name in TIED:
        weights.setdefault(name, present[0])


def load_native(config: Florence2Config, weights: dict[str, torch.Tensor]) -> Florence2ForConditionalGeneration:
    """The native model holding exactly `weights` (built on the meta device, tensors assigned, nothing random)."""
    with torch.device("meta"):
        model = Florence2ForConditionalGeneration(config)
    try:
        result = model.load_state_dict(weights, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches: the config and the weights disagree
        raise ConvertError(f"the weights do not fit the converted config: {str(exc).strip()[:600]}") from exc
    if result.unexpected_keys:
        raise ConvertError(f"weights the native model has no place for: {listed(sorted(result.unexpected_keys))}")
    model.tie_weights()
    empty = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if empty:
        raise ConvertError(f"the checkpoint lacks {listed(empty)}")
    return model


# ----- config, tokenizer, processor ---------------------------------------------------------------------------------
def native_config(old: dict[str, Any], image_token_id: int) -> Florence2Config:
    text_keys = set(BartConfig().to_dict()) - {"model_type", "architectures", "transformers_version", "dtype"}
    text = {k: v for k, v in (old.get("text_config") or {}).items() if k in text_keys}
    text.setdefault("vocab_size", old.get("vocab_size"))
    try:
        vision = Florence2VisionConfig(**native_vision_config(old.get("vision_config") or {}))
        return Florence2Config(vision_config=vision, text_config=BartConfig(**text), image_token_id=image_token_id)
    except (TypeError, ValueError) as exc:
        raise ConvertError(f"config.json: {exc}") from exc


def native_tokenizer(src: Path, text_vocab: int) -> BartTokenizerFast:
    """The old BART tokenizer + the Florence tokens (if it lacks them) + `<image>`, at the published ids."""
    try:
        tokenizer = BartTokenizerFast.from_pretrained(str(src))
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{src}: no usable BART tokenizer (tokenizer.json, or vocab.json + merges.txt): "
                           f"{exc}") from exc
    vocab = tokenizer.get_vocab()
    missing = [t for t in FLORENCE_TOKENS if t not in vocab]
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    if len(tokenizer) != text_vocab:
        raise ConvertError(f"{src}: the tokenizer has {len(tokenizer)} tokens with the Florence ones, the model "
                           f"{text_vocab} embedding rows: they belong to different checkpoints")
    tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return BartTokenizerFast.from_pretrained(tmp, extra_special_tokens={"image_token": IMAGE_TOKEN})


def native_processor(src: Path, tokenizer: BartTokenizerFast) -> Florence2Processor:
    try:
        image_processor = CLIPImageProcessorPil.from_pretrained(str(src))
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{src}: no usable preprocessor_config.json: {exc}") from exc
    if getattr(image_processor, "image_seq_length", None) is None:
        raise ConvertError(f"{src}/preprocessor_config.json has no image_seq_length")
    return Florence2Processor(image_processor=image_processor, tokenizer=tokenizer,
                              post_processor_config=POST_PROCESSOR_CONFIG)


def generation_config(src: Path, old: dict[str, Any]) -> GenerationConfig:
    """The checkpoint's own generation settings, kept as they are (the detector overrides what fights its grammar)."""
    if (src / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(str(src))
    text = old.get("text_config") or {}
    return GenerationConfig(**{k: text.get(k, v) for k, v in PUBLISHED_GENERATION.items()})


# ----- the command --------------------------------------------------------------------------------------------------
def check_output_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConvertError(f"output {out_dir} exists and is not an empty directory: choose a new one")


def convert_checkpoint(src: Path, out_dir: Path, seed: int = 0) -> Path:
    """Convert the remote-code checkpoint directory `src` into a native one at `out_dir`; returns `out_dir`."""
    src, out_dir = Path(src), Path(out_dir)
    old = read_json(src / "config.json")
    if old.get("model_type") != "florence2" or not is_remote_config(old):
        raise ConvertError(f"{src} is not a remote-code Florence-2 checkpoint (model_type 'florence2' with auto_map "
                           "or vision_config.dim_embed); a native checkpoint needs no conversion")
    check_output_dir(out_dir)
    weights = native_state_dict(read_weights(src))
    fill_tied(weights)
    tokenizer = native_tokenizer(src, int(weights[TIED[0]].shape[0]))
    processor = native_processor(src, tokenizer)
    model = load_native(native_config(old, int(tokenizer.image_token_id)), weights)
    torch.manual_seed(seed)  # the new rows (`<image>`, padding) are drawn around the old rows' mean
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=PAD_TO_MULTIPLE)
    model.generation_config = generation_config(src, old)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    for name in CARRIED_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out_dir / name)
    return out_dir
