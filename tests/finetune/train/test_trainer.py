"""The LoRA trainer's schedule and precision rules."""

from __future__ import annotations

import itertools

import pytest
import torch

from finetune.train.config import TrainError
from finetune.train.trainer import amp_dtype, lr_factor, pick_device


def test_learning_rate_warms_up_then_follows_a_cosine_to_zero() -> None:
    factors = [lr_factor(s, warmup=5, total=50) for s in range(51)]
    assert factors[0] == pytest.approx(0.2) and factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))
    assert factors[50] == pytest.approx(0.0, abs=1e-9)


def test_mixed_precision_is_cuda_only() -> None:
    assert amp_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(TrainError, match="amp='bf16' needs a CUDA device"):
        amp_dtype("bf16", torch.device("cpu"))


def test_an_unavailable_device_is_a_training_error() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="device 'cuda' requested"):
            pick_device("cuda")
