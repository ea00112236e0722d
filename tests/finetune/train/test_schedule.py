"""Learning-rate schedules: the cosine default and the three-stage preset's stages, rates and frozen vision stages."""

from __future__ import annotations

import itertools

import pytest
import torch

from finetune.train.config import TrainConfig, TrainError
from finetune.train.schedule import lr_factor, lr_lambdas, stage_index, stage_lr, vision_stage_of


def test_learning_rate_warms_up_then_follows_a_cosine_to_zero() -> None:
    factors = [lr_factor(s, warmup=5, total=50) for s in range(51)]
    assert factors[0] == pytest.approx(0.2) and factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))
    assert factors[50] == pytest.approx(0.0, abs=1e-9)


def test_three_stages_split_the_steps_at_their_ends() -> None:
    stages = [stage_index(s, 9, (1 / 3, 2 / 3)) for s in range(9)]
    assert stages == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [stage_index(s, 10, (0.5, 0.8)) for s in (0, 4, 5, 7, 8, 9)] == [0, 0, 1, 1, 2, 2]


def test_the_three_stage_rates_are_1e4_then_5e5_then_1e5_after_the_warm_up() -> None:
    config = TrainConfig(schedule="three-stage", warmup_steps=2)
    rates = [stage_lr(s, 12, config) for s in range(12)]
    assert rates[:2] == pytest.approx([0.5e-4, 1e-4])
    assert rates[2:4] == pytest.approx([1e-4, 1e-4])
    assert rates[4:8] == pytest.approx([5e-5] * 4) and rates[8:] == pytest.approx([1e-5] * 4)


def test_every_optimizer_group_gets_the_stage_rate_whatever_its_base() -> None:
    config = TrainConfig(schedule="three-stage", warmup_steps=0, lr=2e-4, vision_lr_scale=0.1)
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params[:1], "lr": 2e-4}, {"params": params[1:], "lr": 2e-5}])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambdas(config, [2e-4, 2e-5], total=3))
    seen = []
    for _ in range(3):
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    assert seen == [pytest.approx([1e-4, 1e-4]), pytest.approx([5e-5, 5e-5]), pytest.approx([1e-5, 1e-5])]


def test_vision_stages_are_read_from_the_davit_block_names() -> None:
    assert vision_stage_of("base_model.model.model.vision_tower.blocks.2.0.spatial_block.ffn.fc1.lora_A") == 2
    assert vision_stage_of("base_model.model.model.language_model.encoder.layers.0.fc1.lora_A") is None


def test_a_schedule_must_be_known_and_its_stage_ends_ordered() -> None:
    with pytest.raises(TrainError, match="schedule='linear'"):
        TrainConfig(schedule="linear")
    with pytest.raises(TrainError, match="stage_ends"):
        TrainConfig(schedule="three-stage", stage_ends=(0.7, 0.4))
    with pytest.raises(TrainError, match="unfreeze_vision_epoch"):
        TrainConfig(schedule="three-stage", unfreeze_vision_epoch=1)
