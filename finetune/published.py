"""Published Florence-2 architectures with random weights: what `florence-community/Florence-2-{base,base-ft,large,
large-ft}` look like on disk (config.json, generation_config.json, tokenizer, processor), without a hub.

Sizes, vocabulary padding, special ids and generation settings follow the published native checkpoints (made by
transformers' Florence-2 conversion from `microsoft/Florence-2-*`): DaViT vision tower + BART encoder-decoder, a text
vocabulary of 51,289 tokens (BART's 50,265 + 1,024 Florence tokens) + `<image>` at id 51289, embedding rows padded to
a multiple of 64 (51,328: rows 51290.. are never produced by the tokenizer), generation with 3 beams,
`no_repeat_ngram_size` 3, forced BOS 0 and forced EOS 2 (the detector overrides those: `agent/detector/generation.py`).

The tokenizer cannot be BART's own offline (its 50k BPE merges are not in any installed package): it has BART's
special ids (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` 50264), the Florence tokens at their published ids
(`<od>` 50265 ... `<loc_0>` 50269 ... `<loc_999>` 51268 ... `<and>` 51288) and `<image>` 51289, and a small byte-level
BPE trained on the task prompts in ids 4..; the remaining ids up to 50263 are `<unused_N>` fillers no text encodes
to. docs/models.md lists exactly what differs.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
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

from finetune.tiny import POST_PROCESSOR_CONFIG, PROMPT_CORPUS

# BART's vocabulary: 50,265 ids, `<mask>` last; Florence-2 adds these 1,024 tokens after it (published order).
BART_VOCAB = 50265
BART_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"
FLORENCE_TOKENS: tuple[str, ...] = (
    "<od>", "</od>", "<ocr>", "</ocr>",
    *(f"<loc_{i}>" for i in range(1000)),
    "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>", "</dcap>", "<grounding>", "</grounding>", "<seg>", "</seg>",
    "<sep>", "<region_cap>", "</region_cap>", "<region_to_desciption>", "</region_to_desciption>", "<proposal>",
    "</proposal>", "<poly>", "</poly>", "<and>",
)
TEXT_VOCAB = BART_VOCAB + len(FLORENCE_TOKENS)  # 51,289: the remote-code models' vocab_size
IMAGE_TOKEN = "<image>"  # id TEXT_VOCAB (51289)
PAD_TO_MULTIPLE = 64  # embedding rows, as transformers' conversion resized them: 51,290 -> 51,328
IMAGE_SIZE = 768
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# generation_config.json of the published checkpoints (the remote-code configs' text_config carried the same).
PUBLISHED_GENERATION: dict[str, Any] = {
    "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 2,
    "forced_bos_token_id": 0, "forced_eos_token_id": 2, "num_beams": 3, "no_repeat_ngram_size": 3,
    "early_stopping": True,
}


@dataclass(frozen=True)
class PublishedVariant:
    """One published architecture: hub id and the sizes its config.json gives."""

    hub_id: str
    vision_dims: tuple[int, ...]
    vision_heads: tuple[int, ...]  # also the channel-attention groups
    d_model: int
    layers: int  # encoder layers = decoder layers
    heads: int
    ffn_dim: int
    max_positions: int


def _base_sized(hub_id: str) -> PublishedVariant:
    return PublishedVariant(hub_id, vision_dims=(128, 256, 512, 1024), vision_heads=(4, 8, 16, 32), d_model=768,
                            layers=6, heads=12, ffn_dim=3072, max_positions=1024)


def _large_sized(hub_id: str) -> PublishedVariant:
    return PublishedVariant(hub_id, vision_dims=(256, 512, 1024, 2048), vision_heads=(8, 16, 32, 64), d_model=1024,
                            layers=12, heads=16, ffn_dim=4096, max_positions=4096)


VARIANTS: dict[str, PublishedVariant] = {
    "base": _base_sized("florence-community/Florence-2-base"),
    "base-ft": _base_sized("florence-community/Florence-2-base-ft"),
    "large": _large_sized("florence-community/Florence-2-large"),
    "large-ft": _large_sized("florence-community/Florence-2-large-ft"),
}


def variant_of(name: str) -> PublishedVariant:
    if name not in VARIANTS:
        raise ValueError(f"unknown Florence-2 variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def padded_vocab(tokens: int, multiple: int = PAD_TO_MULTIPLE) -> int:
    return -(-tokens // multiple) * multiple


# ----- tokenizer ----------------------------------------------------------------------------------------------------
def _prompt_bpe(class_names: Sequence[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small byte-level BPE over the task prompts (+ class names): its vocabulary (specials first) and merges."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=list(BART_SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(PROMPT_CORPUS) + [n for n in class_names for _ in range(8)], trainer)
    model = json.loads(tok.to_str())["model"]
    return dict(model["vocab"]), [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]


def bart_layout_tokenizer(florence_tokens: bool = True, class_names: Sequence[str] = ()) -> BartTokenizerFast:
    """A byte-level BPE with BART's id layout (50,265 ids, `<mask>` 50264); with `florence_tokens`, the Florence
    tokens and `<image>` follow at their published ids. Without them it is what the remote-code checkpoints ship
    (their processor added the Florence tokens at run time)."""
    vocab, merges = _prompt_bpe(class_names)
    vocab.update({f"<unused_{i}>": i for i in range(len(vocab), BART_VOCAB - 1)})
    vocab[MASK_TOKEN] = BART_VOCAB - 1
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    bpe.add_special_tokens([AddedToken(t, special=True) for t in BART_SPECIALS])
    bpe.add_special_tokens([AddedToken(MASK_TOKEN, special=True, lstrip=True)])
    extra: dict[str, str] = {}
    if florence_tokens:
        bpe.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in (*FLORENCE_TOKENS, IMAGE_TOKEN)])
        extra = {"image_token": IMAGE_TOKEN}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        bpe.save(str(path))
        return BartTokenizerFast(
            tokenizer_file=str(path), bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
            sep_token="</s>", cls_token="<s>", mask_token=MASK_TOKEN, model_max_length=1024,
            extra_special_tokens=extra,
        )


def published_processor(tokenizer: BartTokenizerFast) -> Florence2Processor:
    """CLIP image settings at 768 x 768 with ImageNet's mean and std (not CLIP's), bicubic, no crop, and 577 image
    tokens (24 x 24 + 1)."""
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    image_processor = CLIPImageProcessorPil(
        size=size, crop_size=size, do_center_crop=False, do_convert_rgb=True, resample=3,
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD), image_seq_length=(IMAGE_SIZE // 32) ** 2 + 1,
    )
    return Florence2Processor(image_processor=image_processor, tokenizer=tokenizer,
                              post_processor_config=POST_PROCESSOR_CONFIG)


# ----- config -------------------------------------------------------------------------------------------------------
def published_config(variant: str, image_token_id: int = TEXT_VOCAB) -> Florence2Config:
    """The native config of a published variant (dropouts as published: they only act in training)."""
    spec = variant_of(variant)
    vision = Florence2VisionConfig(
        embed_dim=list(spec.vision_dims), num_heads=list(spec.vision_heads), num_groups=list(spec.vision_heads),
        depths=[1, 1, 9, 1], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2], patch_padding=[3, 1, 1, 1],
        patch_prenorm=[False, True, True, True], window_size=12, drop_path_rate=0.1, projection_dim=spec.d_model,
        max_temporal_embeddings=100, max_position_embeddings=50,
    )
    text = BartConfig(
        vocab_size=padded_vocab(TEXT_VOCAB + 1), d_model=spec.d_model, encoder_layers=spec.layers,
        decoder_layers=spec.layers, encoder_attention_heads=spec.heads, decoder_attention_heads=spec.heads,
        encoder_ffn_dim=spec.ffn_dim, decoder_ffn_dim=spec.ffn_dim, max_position_embeddings=spec.max_positions,
        dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, activation_function="gelu",
        scale_embedding=False, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
        forced_eos_token_id=2,
    )
    return Florence2Config(vision_config=vision, text_config=text, image_token_id=image_token_id)


def published_generation_config() -> GenerationConfig:
    return GenerationConfig(**PUBLISHED_GENERATION)


def parameter_count(variant: str) -> int:
    """Parameters of a variant (tied embeddings counted once), built on the meta device: no memory, no init."""
    with torch.device("meta"):
        model = Florence2ForConditionalGeneration(published_config(variant))
    return sum(p.numel() for p in model.parameters())


# ----- the builder --------------------------------------------------------------------------------------------------
def build_published(variant: str, out_dir: Path, dtype: torch.dtype = torch.float16, seed: int = 0) -> Path:
    """Write a `save_pretrained` directory of the published `variant` with random weights (safetensors, `dtype`,
    FP16 like the published files); returns `out_dir`. No `classes.txt`: published checkpoints have none."""
    config = published_config(variant)
    torch.manual_seed(seed)
    tokenizer = bart_layout_tokenizer()
    processor = published_processor(tokenizer)
    model = Florence2ForConditionalGeneration(config)
    torch.nn.Module.to(model, dtype=dtype)  # (transformers' typing of `to` confuses mypy)
    model.generation_config = published_generation_config()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    write_published_text_config(out_dir)
    return out_dir


def write_published_text_config(model_dir: Path) -> None:
    """Put the generation keys back into config.json's text_config, as the published files have them (written by
    transformers 4.x); transformers 5 reads generation settings from generation_config.json, so this is fidelity to
    what a user arrives with, not a second source of truth."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    keys = ("num_beams", "no_repeat_ngram_size", "early_stopping", "forced_bos_token_id", "forced_eos_token_id")
    config["text_config"].update({k: PUBLISHED_GENERATION[k] for k in keys})
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

