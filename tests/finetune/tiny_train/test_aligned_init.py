"""Aligned initialisation: `<loc>` embeddings and image-token positions share one position code."""

from __future__ import annotations

from pathlib import Path

import torch

from agent.detector.loc import LOC_BINS
from finetune.tiny_train.aligned_init import align_position_init, position_codes


def test_nearby_bins_get_more_similar_codes_than_distant_ones() -> None:
    codes = position_codes(torch.arange(LOC_BINS), 32)
    near = torch.cosine_similarity(codes[500], codes[505], dim=0)
    far = torch.cosine_similarity(codes[500], codes[900], dim=0)
    assert codes.shape == (LOC_BINS, 32) and near > far


def test_loc_embeddings_carry_the_code_of_their_bin_in_both_halves(tmp_path: Path) -> None:
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    from finetune.tiny import TinySpec, build_tiny_model

    model_dir = build_tiny_model(["a"], tmp_path / "m", TinySpec(image_size=64, patch_strides=(4, 2, 1)))
    model = Florence2ForConditionalGeneration.from_pretrained(model_dir)
    tokenizer = AutoProcessor.from_pretrained(model_dir).tokenizer
    loc_ids = torch.tensor(tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOC_BINS)]))
    align_position_init(model, loc_ids, grid=8)
    embeddings = model.get_input_embeddings()
    assert isinstance(embeddings, torch.nn.Embedding)
    embedding = embeddings.weight[loc_ids[7]].detach()
    assert torch.allclose(embedding[:64], embedding[64:])
    assert torch.allclose(embedding[:64], position_codes(torch.tensor([7]), 64)[0] * 0.05)
