"""The LoRA trainer: precision and device rules; on the tiny model, the three-stage preset's stages and
hard-example mining's loss and gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from finetune.data.dataset import Sample
from finetune.lora import LoraSettings, lora_parameters
from finetune.train.config import TrainConfig, TrainError
from finetune.train.schedule import vision_stage_of
from finetune.train.trainer import LoraTrainer, amp_dtype, pick_device
from tests.finetune.lora_helpers import frames, write_set


def test_mixed_precision_is_cuda_only() -> None:
    assert amp_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(TrainError, match="amp='bf16' needs a CUDA device"):
        amp_dtype("bf16", torch.device("cpu"))


def test_an_unavailable_device_is_a_training_error() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="device 'cuda' requested"):
            pick_device("cuda")


# ----- on the tiny model ---------------------------------------------------------------------------------------------
def tiny_trainer(model_dir: Path, **settings: Any) -> LoraTrainer:
    config = TrainConfig(device="cpu", gradient_checkpointing=False, warmup_steps=0, batch_size=2,
                         lora=LoraSettings(r=4, alpha=8, dropout=0.0, vision=True), **settings)
    return LoraTrainer(model_dir, config)


def trainable_vision_stages(trainer: LoraTrainer) -> set[int]:
    return {vision_stage_of(name) or 0 for name, p in lora_parameters(trainer.model, vision=True) if p.requires_grad}


def test_three_stage_unfreezes_the_vision_stages_and_lowers_the_rate_stage_by_stage(tiny_model_dir: Path) -> None:
    trainer = tiny_trainer(tiny_model_dir, schedule="three-stage")
    trainer.set_schedule(9)
    seen = []
    for step in range(9):
        trainer.unfreeze_for(step, epoch=0)
        lrs = {float(group["lr"]) for group in trainer.optimizer.param_groups}
        seen.append((trainable_vision_stages(trainer), lrs))
        trainer.optimizer.step()
        assert trainer.schedule is not None
        trainer.schedule.step()
    # the tiny model's DaViT has 3 stages: stage 1 trains only the last, stage 2 the last two, stage 3 all
    assert seen[0] == seen[2] == ({2}, {1e-4})
    assert seen[3] == seen[5] == ({1, 2}, {5e-5})
    assert seen[6] == seen[8] == ({0, 1, 2}, {1e-5})
    assert all(p.requires_grad for _, p in lora_parameters(trainer.model, vision=False))
    assert not any(p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" not in n)


def tiny_batch(trainer: LoraTrainer, tmp_path: Path, count: int) -> tuple[list[Sample], dict[str, torch.Tensor]]:
    data = write_set(frames(3, count), tmp_path / "data")
    samples = list(data.samples)
    return samples, trainer.batcher(samples, np.random.default_rng(0), task="<OD>")


def test_hard_example_mining_weights_each_samples_loss_and_gradient(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = tiny_trainer(tiny_model_dir, hard_fraction=0.5, hard_weight=3.0)
    trainer.model.eval()  # no dropout: the same sample gives the same loss alone or in a batch
    samples, batch = tiny_batch(trainer, tmp_path, 2)
    param = next(p for _, p in lora_parameters(trainer.model, vision=False))
    alone, grads = [], []
    for sample in samples:
        trainer.model.zero_grad()
        loss = trainer.loss(trainer.batcher([sample], np.random.default_rng(0), task="<OD>"))
        loss.backward()
        alone.append(float(loss.detach()))
        grads.append(param.grad.clone() if param.grad is not None else torch.zeros_like(param))
    weights = [0.5, 1.5] if alone[1] > alone[0] else [1.5, 0.5]  # raw [1, 3] over their mean 2
    trainer.model.zero_grad()
    mined = trainer.loss(batch, mining=True)
    mined.backward()
    assert float(mined) == pytest.approx((weights[0] * alone[0] + weights[1] * alone[1]) / 2, rel=1e-4)
    expected = (weights[0] * grads[0] + weights[1] * grads[1]) / 2
    assert param.grad is not None and torch.allclose(param.grad, expected, rtol=1e-3, atol=1e-7)
    assert float(trainer.loss(batch)) == pytest.approx(float(trainer.loss(batch, mining=False)))


def test_a_part_carried_whole_trains_at_the_full_rate_and_vision_lora_at_the_scaled_one(tiny_model_dir: Path) -> None:
    config = TrainConfig(device="cpu", gradient_checkpointing=False, lr=1e-3, vision_lr_scale=0.1,
                         lora=LoraSettings(r=4, alpha=8, vision=True, whole=("multi_modal_projector",)))
    trainer = LoraTrainer(tiny_model_dir, config)
    rate = {id(p): float(group["lr"]) for group in trainer.optimizer.param_groups for p in group["params"]}
    named = dict(trainer.model.named_parameters())
    projector = [p for n, p in named.items() if "multi_modal_projector.modules_to_save" in n]
    vision_lora = [p for n, p in named.items() if "vision_tower" in n and "lora_" in n]
    assert projector and vision_lora
    assert {rate[id(p)] for p in projector} == {1e-3} and {rate[id(p)] for p in vision_lora} == {1e-4}
    whole_tower = LoraTrainer(tiny_model_dir, TrainConfig(device="cpu", gradient_checkpointing=False, lr=1e-3,
                                                          lora=LoraSettings(r=4, alpha=8, whole=("vision_tower",))))
    tower = {float(g["lr"]) for g in whole_tower.optimizer.param_groups for p in g["params"]
             if any(p is q for n, q in whole_tower.model.named_parameters() if "vision_tower.modules_to_save" in n)}
    assert tower == {1e-3}
