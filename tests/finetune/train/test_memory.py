"""Activation checkpointing is on only where it saves GPU memory the run would lack: off on CPU by default, on CUDA
only when the estimated activations do not fit in free memory; an explicit choice always wins."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from finetune.tiny import TinySpec, build_base_config, build_config, build_tiny_model, build_tokenizer
from finetune.train.config import TrainConfig
from finetune.train.memory import HEADROOM, activation_bytes, choose_checkpointing

GIB = 2**30


def test_the_default_leaves_the_choice_to_the_rule() -> None:
    assert TrainConfig().gradient_checkpointing is None


def test_on_cpu_the_default_is_off_however_much_memory_the_activations_take() -> None:
    choice = choose_checkpointing(None, torch.device("cpu"), needed_bytes=10**15)
    assert not choice.enabled and "CPU" in choice.reason


def test_an_explicit_choice_wins_on_any_device() -> None:
    assert choose_checkpointing(True, torch.device("cpu"), 1).enabled
    assert not choose_checkpointing(False, torch.device("cuda"), 10**15).enabled


def test_on_cuda_it_is_on_only_when_the_activations_would_not_fit_in_free_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (6 * GIB, 8 * GIB))
    cuda = torch.device("cuda")
    assert choose_checkpointing(None, cuda, int(4 * GIB)).enabled  # 4 GiB x headroom 2 > 6 GiB free
    assert not choose_checkpointing(None, cuda, int(6 * GIB / HEADROOM) - 1).enabled


def test_activation_estimate_grows_with_batch_size_and_precision_and_is_gigabytes_for_florence2_base() -> None:
    tokenizer = build_tokenizer(["scratch"])
    base = build_base_config(tokenizer)
    one = activation_bytes(base, 768, 1, precision_bytes=2)
    assert activation_bytes(base, 768, 4, 2) == pytest.approx(4 * one, rel=1e-6)
    assert activation_bytes(base, 768, 1, 4) == pytest.approx(2 * one, rel=1e-6)
    assert 0.3 * GIB < one < 3 * GIB  # a Jetson's 8 GB is tight at batch 4, a 24 GB card is not
    assert activation_bytes(build_config(tokenizer, TinySpec()), 256, 4, 4) < one


def test_a_lora_run_on_cpu_does_not_checkpoint_by_default(tmp_path: Path) -> None:
    from finetune.train.trainer import LoraTrainer

    model_dir = build_tiny_model(["scratch"], tmp_path / "m", TinySpec(image_size=64, patch_strides=(4, 2, 2)))
    trainer = LoraTrainer(model_dir, TrainConfig(device="cpu"))
    assert not trainer.checkpointing.enabled
    assert not trainer.model.get_base_model().is_activation_checkpointing
    forced = LoraTrainer(model_dir, TrainConfig(device="cpu", gradient_checkpointing=True))
    assert forced.checkpointing.enabled and forced.model.get_base_model().is_activation_checkpointing
