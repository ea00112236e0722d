"""PaliGemma training inputs: `prefix + answer` rows whose answer is the grammar's own token sequence, and whose
next-token loss is the one the model itself computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agent.detector.paligemma.dialect import to_answer
from finetune.losses import IGNORE_INDEX, token_losses
from finetune.paligemma.trainer import PaliGemmaTrainer
from finetune.train.config import TrainConfig
from tests.finetune.lora_helpers import frames, write_set


@pytest.fixture(scope="module")
def trainer(tiny_paligemma_dir: Path) -> PaliGemmaTrainer:
    return PaliGemmaTrainer(tiny_paligemma_dir, TrainConfig(device="cpu", gradient_checkpointing=False))


def test_rows_are_the_prompt_then_the_answer_with_labels_and_token_types_to_match(trainer: PaliGemmaTrainer,
                                                                                  tmp_path: Path) -> None:
    dataset = write_set(frames(3, 3), tmp_path / "set")
    batch = trainer.batcher(dataset.samples, np.random.default_rng(0))
    prefix = trainer.batcher.prefix
    tokenizer = trainer.processor.tokenizer
    assert tokenizer.decode(prefix[-8:]) == "<bos>detect scratch ; hole ; stain\n"
    for row, sample in enumerate(dataset.samples):
        end = int(batch["attention_mask"][row].sum())
        assert torch.equal(batch["input_ids"][row, : len(prefix)], prefix)
        answer = batch["input_ids"][row, len(prefix) : end].tolist()
        assert tokenizer.decode(answer) == to_answer(sample.detections.sorted_raster()) + "<eos>"
        types, labels = batch["token_type_ids"][row], batch["labels"][row]
        assert types[: len(prefix)].eq(0).all() and types[len(prefix) : end].eq(1).all()
        assert labels[: len(prefix)].eq(IGNORE_INDEX).all() and labels[end:].eq(IGNORE_INDEX).all()
        assert batch["labels"][row, len(prefix) : end].tolist() == answer


def test_the_aligned_token_loss_is_the_models_own_next_token_loss(trainer: PaliGemmaTrainer, tmp_path: Path) -> None:
    dataset = write_set(frames(4, 2), tmp_path / "set")
    batch = trainer.batcher(dataset.samples, np.random.default_rng(0))
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(**batch, use_cache=False)
        logits, labels = trainer.next_token_view(out.logits, batch["labels"])
        per_token, valid = token_losses(logits, labels, trainer.loc_ids, None)
    assert float((per_token * valid).sum() / valid.sum()) == pytest.approx(float(out.loss), rel=1e-5)
