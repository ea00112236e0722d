"""Tiny Florence-2 builder: a real `Florence2ForConditionalGeneration` small enough to train and test on a CPU.

It writes the same `save_pretrained` layout as a hub checkpoint (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, processor_config.json, generation_config.json), so loading it goes through exactly the code
path users take with `florence-community/Florence-2-base` or a fine-tuned directory.

The tokenizer is a byte-level BPE (like BART's) trained on the Florence task prompts and the class names, plus the
1000 `<loc_N>` tokens and the `<image>` placeholder.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BartConfig,
    BartTokenizerFast,
    CLIPImageProcessorPil,
    Florence2Config,
    Florence2ForConditionalGeneration,
    Florence2Processor,
    Florence2VisionConfig,
    PreTrainedModel,
    ProcessorMixin,
)

from agent.detector.loc import LOC_BINS
from agent.modeldir import write_class_names

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# Florence's task prompts (what Florence2Processor expands task tokens into) and a few words of captions.
PROMPT_CORPUS = (
    "Locate the objects with category name in the image.",
    "Locate the objects in the image, with their descriptions.",
    "Locate the phrases in the caption: ",
    "Locate the region proposals in the image.",
    "What does the image describe?",
    "Describe in detail what is shown in the image.",
    "What is the text in the image?",
)
# Parse rules Florence2Processor.post_process_generation needs for the tasks we use.
POST_PROCESSOR_CONFIG: dict[str, dict[str, object]] = {
    "description_with_bboxes": {},
    "bboxes": {},
    "pure_text": {},
    "phrase_grounding": {"banned_grounding_tokens": []},
    "description_with_polygons": {},
    "polygons": {},
    "description_with_bboxes_or_polygons": {},
    "ocr": {"AREA_THRESHOLD": 0.0},
}


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model. Defaults: ~2 M parameters, 256 px input, a 16 x 16 image-token grid."""

    image_size: int = 256
    vision_dims: tuple[int, ...] = (32, 64, 128)
    vision_heads: tuple[int, ...] = (2, 4, 8)
    patch_strides: tuple[int, ...] = (4, 2, 2)  # total stride 16 -> (256/16)^2 = 256 image tokens
    window_size: int = 4
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    max_positions: int = 512
    sinusoidal_loc_init: bool = True
    seed: int = 0

    @property
    def grid(self) -> int:
        return self.image_size // math.prod(self.patch_strides)


def build_tokenizer(class_names: Sequence[str], vocab_size: int = 400) -> BartTokenizerFast:
    """Byte-level BPE over prompts + class names, with `<loc_N>` and `<image>` added."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(PROMPT_CORPUS) + [name for name in class_names for _ in range(8)], trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        tok.save(str(path))
        fast = BartTokenizerFast(
            tokenizer_file=str(path),
            bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
            sep_token="</s>", cls_token="<s>", mask_token="<mask>",
            extra_special_tokens={"image_token": "<image>"},
        )
    fast.add_tokens([f"<loc_{i}>" for i in range(LOC_BINS)])
    return fast


def can_spell(tokenizer: Any, name: str) -> bool:
    """True when `name` survives `tokenizer` unchanged: no unknown token, and decoding gives it back byte for byte.

    A byte-level BPE (ours, BART's, Florence-2's) spells every string; a word-piece vocabulary may not."""
    ids = tokenizer(name, add_special_tokens=False).input_ids
    unknown = tokenizer.unk_token_id
    return bool(ids) and unknown not in ids and tokenizer.decode(ids) == name


def build_processor(tokenizer: BartTokenizerFast, spec: TinySpec) -> Florence2Processor:
    size = {"height": spec.image_size, "width": spec.image_size}
    image_processor = CLIPImageProcessorPil(
        size=size, crop_size=size, do_center_crop=False, do_convert_rgb=True,
        image_seq_length=spec.grid * spec.grid + 1,  # spatial tokens + one temporal token
    )
    return Florence2Processor(
        image_processor=image_processor, tokenizer=tokenizer, post_processor_config=POST_PROCESSOR_CONFIG
    )


def build_config(tokenizer: BartTokenizerFast, spec: TinySpec) -> Florence2Config:
    n = len(spec.vision_dims)
    vision = Florence2VisionConfig(
        depths=[1] * n, patch_size=[7] + [3] * (n - 1), patch_stride=list(spec.patch_strides),
        patch_padding=[3] + [1] * (n - 1), patch_prenorm=[False] + [True] * (n - 1),
        embed_dim=list(spec.vision_dims), num_heads=list(spec.vision_heads), num_groups=list(spec.vision_heads),
        window_size=spec.window_size, projection_dim=spec.d_model, drop_path_rate=0.0,
        max_position_embeddings=max(50, spec.grid),
    )
    text = BartConfig(
        vocab_size=len(tokenizer), d_model=spec.d_model, encoder_layers=spec.layers, decoder_layers=spec.layers,
        encoder_attention_heads=spec.heads, decoder_attention_heads=spec.heads,
        encoder_ffn_dim=spec.ffn_dim, decoder_ffn_dim=spec.ffn_dim, max_position_embeddings=spec.max_positions,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id, dropout=0.0, attention_dropout=0.0,
    )
    return Florence2Config(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)


def sinusoidal_loc_embeddings(dim: int, bins: int = LOC_BINS, scale: float = 0.02) -> torch.Tensor:
    """Embeddings where neighbouring `<loc>` bins are similar: sin/cos of the bin index at several frequencies.

    Why: with random embeddings every bin is equally far from every other, so the model cannot learn that bin 500
    is almost as good as bin 501; smooth embeddings let (tied) output logits vary smoothly with position.
    """
    pos = torch.arange(bins, dtype=torch.float32)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(bins * 4.0) / dim))
    emb = torch.zeros(bins, dim)
    emb[:, 0::2] = torch.sin(pos * freqs)
    emb[:, 1::2] = torch.cos(pos * freqs)
    return emb * scale * math.sqrt(2.0)


def build_tiny_model(
    class_names: Sequence[str], out_dir: Path, spec: TinySpec | None = None
) -> Path:
    """Build, initialise and save a tiny Florence-2 for `class_names` into `out_dir`; returns `out_dir`."""
    check_class_names(class_names)
    spec = spec or TinySpec()
    torch.manual_seed(spec.seed)
    tokenizer = build_tokenizer(class_names)
    processor = build_processor(tokenizer, spec)
    model = Florence2ForConditionalGeneration(build_config(tokenizer, spec))
    if spec.sinusoidal_loc_init:
        loc_ids = tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOC_BINS)])
        with torch.no_grad():
            embeddings: torch.nn.Embedding = model.get_input_embeddings()  # type: ignore[assignment]
            embeddings.weight[loc_ids] = sinusoidal_loc_embeddings(spec.d_model)
    model.generation_config.max_new_tokens = 64
    return save_model(model, processor, class_names, Path(out_dir))


def check_class_names(class_names: Sequence[str]) -> None:
    """Names that classes.txt and the `<OD>` answer can carry: non-empty, unique, no surrounding blanks, no `<`/`>`
    (they delimit `<loc_N>` tokens) and no line breaks (classes.txt holds one name per line)."""
    if not class_names or any(not name.strip() for name in class_names):
        raise ValueError(f"class names must be non-empty strings, got {list(class_names)!r}")
    bad = [n for n in class_names if n != n.strip() or any(c in n for c in "<>\n\r")]
    if bad:
        raise ValueError(f"class name {bad[0]!r}: no leading/trailing blanks, '<', '>' or line breaks allowed")
    repeated = sorted({n for n in class_names if list(class_names).count(n) > 1})
    if repeated:
        raise ValueError(f"class name(s) {repeated} appear more than once")


def save_model(model: PreTrainedModel, processor: ProcessorMixin, class_names: Sequence[str], out_dir: Path) -> Path:
    """Greedy generation defaults, then the `save_pretrained` layout plus `classes.txt`; returns `out_dir` (any
    family's tiny model: finetune/paligemma/tiny.py saves through it too)."""
    model.generation_config.num_beams = 1
    model.generation_config.do_sample = False
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    write_class_names(out_dir, class_names)
    return out_dir


# Florence-2-base (florence-community/Florence-2-base): DaViT vision tower (the Florence2VisionConfig defaults) and a
# BART-base-sized language model (768 wide, 6 + 6 layers) with a 51,289-token vocabulary, at 768 x 768.
BASE_VOCAB = 51289
BASE_IMAGE_SIZE = 768


def build_base_config(tokenizer: BartTokenizerFast) -> Florence2Config:
    """Florence-2-base sizes; the token ids come from `tokenizer`, whose vocabulary is padded up to 51,289 rows."""
    vision = Florence2VisionConfig(projection_dim=768, drop_path_rate=0.0)
    text = BartConfig(
        vocab_size=BASE_VOCAB, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
        decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
        forced_eos_token_id=tokenizer.eos_token_id, dropout=0.0, attention_dropout=0.0,
    )
    return Florence2Config(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)


def build_base_random_model(class_names: Sequence[str], out_dir: Path, seed: int = 0) -> Path:
    """Randomly initialised Florence-2-base architecture (no hub access needed) for benchmarks; returns `out_dir`."""
    check_class_names(class_names)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(class_names)
    processor = build_processor(tokenizer, TinySpec(image_size=BASE_IMAGE_SIZE, patch_strides=(4, 2, 2, 2)))
    model = Florence2ForConditionalGeneration(build_base_config(tokenizer))
    return save_model(model, processor, class_names, Path(out_dir))
