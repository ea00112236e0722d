"""The old remote-code Florence-2 layout (`microsoft/Florence-2-*`, maestro/autodistill adapters) <-> the native
transformers layout: parameter names, the one transposed tensor, the config.

transformers' own conversion script (`convert_florence2_original_pytorch_to_hf.py`) is not shipped in the installed
package, and it loads the old model through its remote code; this module writes the same mapping as data instead.
Names are rewritten by prefix rules (first match wins); what follows the matched prefix is kept, so a rule written
for `...ffn.fn.net.fc2.weight` also renames a LoRA key `...ffn.fn.net.fc2.lora_A.weight`.

    old                                                     native
    vision_tower.convs.N.proj.*                             model.vision_tower.convs.N.conv.*
    vision_tower.blocks.S.B.{spatial,channel}_block.convK.fn.dw.*   ...convK.*
    ...spatial_block.window_attn.norm.* / .fn.*             ...spatial_block.norm1.* / .window_attn.*
    ...channel_block.channel_attn.norm.* / .fn.*            ...channel_block.norm1.* / .channel_attn.*
    ...{spatial,channel}_block.ffn.norm.* / .ffn.fn.net.*   ...norm2.* / .ffn.*
    image_projection (D_vision x D_text)                    model.multi_modal_projector.image_projection.weight
                                                            (transposed: D_text x D_vision)
    image_proj_norm.*, image_pos_embed.*, visual_temporal_embed.*   model.multi_modal_projector.{image_proj_norm,
                                                            image_position_embed, visual_temporal_embed}.*
    language_model.model.*                                  model.language_model.*
    language_model.lm_head.*                                lm_head.*
    language_model.final_logits_bias                        (none: must be all zeros, as BART leaves it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_BLOCK = "vision_tower.blocks.{s}.{b}."
# (old prefix, native prefix); `{name}` stands for a number, `{kind}` for spatial_block|channel_block, `{k}` for 1|2
PREFIX_RULES: tuple[tuple[str, str], ...] = (
    ("vision_tower.convs.{n}.proj.", "model.vision_tower.convs.{n}.conv."),
    ("vision_tower.convs.{n}.norm.", "model.vision_tower.convs.{n}.norm."),
    (_BLOCK + "{kind}.conv{k}.fn.dw.", "model." + _BLOCK + "{kind}.conv{k}."),
    (_BLOCK + "spatial_block.window_attn.norm.", "model." + _BLOCK + "spatial_block.norm1."),
    (_BLOCK + "spatial_block.window_attn.fn.", "model." + _BLOCK + "spatial_block.window_attn."),
    (_BLOCK + "channel_block.channel_attn.norm.", "model." + _BLOCK + "channel_block.norm1."),
    (_BLOCK + "channel_block.channel_attn.fn.", "model." + _BLOCK + "channel_block.channel_attn."),
    (_BLOCK + "{kind}.ffn.norm.", "model." + _BLOCK + "{kind}.norm2."),
    (_BLOCK + "{kind}.ffn.fn.net.", "model." + _BLOCK + "{kind}.ffn."),
    ("image_proj_norm.", "model.multi_modal_projector.image_proj_norm."),
    ("image_pos_embed.", "model.multi_modal_projector.image_position_embed."),
    ("visual_temporal_embed.", "model.multi_modal_projector.visual_temporal_embed."),
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
)
# Whole names: the old projection is a bare parameter (x @ P), the native one a Linear (x @ W.T): W = P.T.
TRANSPOSED = {"image_projection": "model.multi_modal_projector.image_projection.weight"}
ZERO_BUFFERS = ("language_model.final_logits_bias",)  # BART's; the native model has none
_SLOTS = {"n": r"\d+", "s": r"\d+", "b": r"\d+", "k": "[12]", "kind": "spatial_block|channel_block"}


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{_SLOTS[p]})" for i, p in enumerate(parts))
    return re.compile(pattern)


@dataclass(frozen=True)
class _Rule:
    source: re.Pattern[str]
    target: str

    def apply(self, name: str) -> str | None:
        match = self.source.match(name)
        if match is None:
            return None
        return self.target.format(**match.groupdict()) + name[match.end():]


_TO_NATIVE = tuple(_Rule(_compile(old), new) for old, new in PREFIX_RULES)
_TO_OLD = tuple(_Rule(_compile(new), old) for old, new in PREFIX_RULES)


def native_name(old: str) -> str | None:
    """The native name of an old-layout parameter (or of a LoRA key under it); None when no rule covers it."""
    if old in TRANSPOSED:
        return TRANSPOSED[old]
    return next((new for rule in _TO_NATIVE if (new := rule.apply(old)) is not None), None)


def old_name(native: str) -> str | None:
    """The inverse of `native_name` (tests build old-layout checkpoints from our own models with it)."""
    inverse = {v: k for k, v in TRANSPOSED.items()}
    if native in inverse:
        return inverse[native]
    return next((old for rule in _TO_OLD if (old := rule.apply(native)) is not None), None)


def is_transposed(old: str) -> bool:
    return old in TRANSPOSED


# ----- config -------------------------------------------------------------------------------------------------------
VISION_KEYS = ("depths", "patch_size", "patch_stride", "patch_padding", "patch_prenorm", "num_heads", "num_groups",
               "window_size", "drop_path_rate", "projection_dim")


def is_remote_config(config: dict[str, Any]) -> bool:
    """An old remote-code config: it names its own code (`auto_map`) or has the DaViT `dim_embed` key."""
    return "auto_map" in config or "dim_embed" in (config.get("vision_config") or {})


def native_vision_config(old_vision: dict[str, Any]) -> dict[str, Any]:
    """The remote DaViT config -> `Florence2VisionConfig` keyword arguments (as transformers' conversion does)."""
    try:
        native = {key: old_vision[key] for key in VISION_KEYS}
        native["embed_dim"] = old_vision["dim_embed"]
        native["max_temporal_embeddings"] = old_vision["visual_temporal_embedding"]["max_temporal_embeddings"]
        native["max_position_embeddings"] = old_vision["image_pos_embed"]["max_pos_embeddings"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"vision_config lacks {exc} (a remote-code Florence-2 config has it)") from None
    if old_vision.get("image_feature_source", ["spatial_avg_pool", "temporal_avg_pool"]) != [
            "spatial_avg_pool", "temporal_avg_pool"]:
        raise ValueError(f"vision_config image_feature_source {old_vision['image_feature_source']!r}: the native "
                         "model only has ['spatial_avg_pool', 'temporal_avg_pool']")
    return native


def old_vision_config(native_vision: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `native_vision_config` (tests write old-layout configs with it)."""
    old = {key: native_vision[key] for key in VISION_KEYS}
    old.update(model_type="davit", dim_embed=native_vision["embed_dim"],
               visual_temporal_embedding={"type": "COSINE",
                                          "max_temporal_embeddings": native_vision["max_temporal_embeddings"]},
               image_pos_embed={"type": "learned_abs_2d",
                                "max_pos_embeddings": native_vision["max_position_embeddings"]},
               image_feature_source=["spatial_avg_pool", "temporal_avg_pool"])
    return old
