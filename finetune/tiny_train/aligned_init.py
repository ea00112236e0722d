"""Aligned initialisation: image tokens and `<loc>` embeddings start out speaking the same position code."""

from __future__ import annotations

import math
from typing import Any

import torch

from agent.detector.loc import LOC_BINS


def position_codes(bins: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal codes (dim values each) of `<loc>` bin positions; nearby bins get similar codes."""
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(LOC_BINS * 4.0) / dim))
    angles = bins.float()[:, None] * freqs[None, :]
    codes = torch.zeros(len(bins), dim)
    codes[:, 0::2] = torch.sin(angles)
    codes[:, 1::2] = torch.cos(angles)
    return codes


def align_position_init(model: Any, loc_ids: torch.Tensor, grid: int, loc_scale: float = 0.05) -> None:
    """Initialise so that image tokens and `<loc>` embeddings speak the same position code.

    `<loc_k>` = [code(k), code(k)] (x half, y half); the 2-D position embedding of grid cell (row i, column j) =
    [code(bin of the column centre), code(bin of the row centre)] and the image projection starts as identity.
    A decoder state that copies the x half of an attended cell then already scores `<loc>` tokens near that cell's
    x coordinate highest, so localisation need not be discovered from random embeddings.
    """
    d_model = int(model.config.text_config.d_model)
    projector = model.model.multi_modal_projector
    half = projector.image_position_embed.column_embeddings.weight.shape[1]
    if half * 2 != d_model or projector.image_projection.weight.shape != (d_model, d_model):
        raise ValueError(f"aligned init needs vision dim == d_model == {d_model}")
    centres = ((torch.arange(grid) + 0.5) * LOC_BINS / grid).floor()
    with torch.no_grad():
        codes = position_codes(torch.arange(LOC_BINS), half)
        model.get_input_embeddings().weight[loc_ids] = torch.cat([codes, codes], dim=1) * loc_scale
        projector.image_position_embed.column_embeddings.weight[:grid] = position_codes(centres, half)
        projector.image_position_embed.row_embeddings.weight[:grid] = position_codes(centres, half)
        projector.image_projection.weight.copy_(torch.eye(d_model))
