"""Tiny PaliGemma 2 builder: a real `PaliGemmaForConditionalGeneration` (SigLIP vision tower + Gemma 2 text model,
random weights) small enough to train and test on a CPU, with a tokenizer built locally (model hubs are out of
reach).

It writes the `save_pretrained` layout of a hub checkpoint (config.json with `model_type: paligemma`,
model.safetensors, tokenizer.json, tokenizer_config.json, processor_config.json, generation_config.json) plus
`classes.txt`, so loading it goes through the code path a downloaded `google/paligemma2-3b-pt-224` takes.

The tokenizer is Gemma's kind (`GemmaTokenizer`: BPE with byte fallback, spaces as `▁`, no pre-splitting) trained
on the detection prompt words and the class names, with the 1024 `<loc0000>`..`<loc1023>` tokens, PaliGemma's 128
`<seg000>` tokens and the `<image>` token added.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (
    Gemma2Config,
    GemmaTokenizer,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
)

from agent.detector.paligemma.dialect import LOC_BINS, LOC_TOKENS, PROMPT_VERB, SEPARATOR, check_class_names
from finetune.tiny import check_class_names as check_florence_names
from finetune.tiny import save_model, sinusoidal_loc_embeddings

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")  # Gemma's ids 0..4
SEG_TOKENS = tuple(f"<seg{i:03d}>" for i in range(128))
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))  # byte fallback: any text can be spelt
PROMPT_CORPUS = (PROMPT_VERB, "caption en", "answer en", "segment")


@dataclass(frozen=True)
class TinyPaliSpec:
    """Sizes of the tiny model. Defaults: ~0.4 M parameters (most in the vocabulary), 256 px input, 16 px patches."""

    image_size: int = 256
    patch_size: int = 16
    vision_dim: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_dim: int = 64
    text_layers: int = 2
    text_heads: int = 2
    head_dim: int = 32
    ffn_dim: int = 128
    answer_tokens: int = 256  # room for the prompt and the answer after the image tokens
    embed_std: float = 0.3  # token embeddings (tied to lm_head): see `init_embeddings`
    sinusoidal_loc_init: bool = True
    seed: int = 0

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def build_tokenizer(class_names: Sequence[str], vocab_size: int = 300) -> GemmaTokenizer:
    """A Gemma-style BPE over the prompt words and class names, with location, segmentation and image tokens."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    # trained on words (each with its leading ▁), so no merge spans two words, as in Gemma's own vocabulary
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    corpus = [*PROMPT_CORPUS, SEPARATOR, *(f" {name}{SEPARATOR}" for name in class_names for _ in range(8))]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                                        show_progress=False))
    learnt = json.loads(tok.to_str())["model"]
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *BYTE_TOKENS))}
    for token, _ in sorted(learnt["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learnt["merges"]]
    # merges as pairs, which the tokenizers BPE takes (the annotation says strings)
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=False,  # type: ignore[arg-type]
                               extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens([*LOC_TOKENS, *SEG_TOKENS])
    return tokenizer


def build_processor(tokenizer: GemmaTokenizer, spec: TinyPaliSpec) -> PaliGemmaProcessor:
    size = {"height": spec.image_size, "width": spec.image_size}
    image_processor = SiglipImageProcessorPil(size=size, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    # PaliGemmaProcessor reads it: one <image> per patch
    image_processor.image_seq_length = spec.image_tokens  # type: ignore[attr-defined]
    return PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_config(tokenizer: GemmaTokenizer, spec: TinyPaliSpec) -> PaliGemmaConfig:
    vision = SiglipVisionConfig(hidden_size=spec.vision_dim, intermediate_size=spec.ffn_dim,
                                num_hidden_layers=spec.vision_layers, num_attention_heads=spec.vision_heads,
                                image_size=spec.image_size, patch_size=spec.patch_size, vision_use_head=False)
    positions = spec.image_tokens + spec.answer_tokens
    text = Gemma2Config(vocab_size=len(tokenizer), hidden_size=spec.text_dim, intermediate_size=spec.ffn_dim,
                        num_hidden_layers=spec.text_layers, num_attention_heads=spec.text_heads,
                        num_key_value_heads=1, head_dim=spec.head_dim, query_pre_attn_scalar=spec.head_dim,
                        max_position_embeddings=positions, sliding_window=positions,
                        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, attention_dropout=0.0)
    return PaliGemmaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.image_token_id,
                           vocab_size=len(tokenizer), projection_dim=spec.text_dim, hidden_size=spec.text_dim)


def build_tiny_paligemma(class_names: Sequence[str], out_dir: Path, spec: TinyPaliSpec | None = None) -> Path:
    """Build, initialise and save a tiny PaliGemma 2 for `class_names` into `out_dir`; returns `out_dir`."""
    spec = spec or TinyPaliSpec()
    check_spec(class_names, spec)
    torch.manual_seed(spec.seed)
    tokenizer = build_tokenizer(class_names)
    processor = build_processor(tokenizer, spec)
    model = PaliGemmaForConditionalGeneration(build_config(tokenizer, spec))
    init_embeddings(model, tokenizer, spec)
    generation = model.generation_config
    generation.max_new_tokens, generation.eos_token_id = 64, tokenizer.eos_token_id
    generation.pad_token_id, generation.bos_token_id = tokenizer.pad_token_id, tokenizer.bos_token_id
    return save_model(model, processor, class_names, Path(out_dir))


def init_embeddings(model: PaliGemmaForConditionalGeneration, tokenizer: GemmaTokenizer, spec: TinyPaliSpec) -> None:
    """Token embeddings (tied to `lm_head`) with rows of norm ~`embed_std` x sqrt(dim); location rows sinusoidal
    (neighbouring bins start out similar, see finetune/tiny.py) at the same norm.

    Why not transformers' 0.02: after Gemma's final norm a hidden state has norm ~sqrt(dim), so with rows that
    small no logit can exceed ~1.3 and the model could never be sure of a token; LoRA leaves both the norm and the
    embeddings frozen, so fine-tuning could not fix it."""
    with torch.no_grad():
        embeddings: torch.nn.Embedding = model.get_input_embeddings()  # type: ignore[assignment]
        embeddings.weight.normal_(0.0, spec.embed_std)
        if spec.sinusoidal_loc_init:
            loc_ids = tokenizer.convert_tokens_to_ids(list(LOC_TOKENS))
            embeddings.weight[loc_ids] = sinusoidal_loc_embeddings(spec.text_dim, LOC_BINS, spec.embed_std)


def check_spec(class_names: Sequence[str], spec: TinyPaliSpec) -> None:
    """ValueError naming the bad value: class names a PaliGemma answer cannot carry, or an image size that is not a
    whole number of patches."""
    check_florence_names(class_names)  # non-empty, unique, one per line of classes.txt
    check_class_names(class_names)  # and no ';' (the separator)
    if spec.image_size <= 0 or spec.image_size % spec.patch_size:
        raise ValueError(f"--image-size {spec.image_size} is not a multiple of the patch size {spec.patch_size}")
