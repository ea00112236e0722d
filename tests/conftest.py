"""Shared fixtures: a tiny Florence-2 built once per session; the private Mosquitto broker plugin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings as hypothesis_settings

from agent.capture.synthetic import SyntheticFrame
from finetune.tiny import TinySpec
from finetune.tiny_train.trainer import TinyTrainConfig

pytest_plugins = ["tests.fixtures.broker", "tests.fixtures.genicam"]

TINY_CLASSES = ("scratch", "hole", "stain")
OVERFIT_SPEC = TinySpec(image_size=128, patch_strides=(4, 2, 1))  # 16 x 16 token grid on 128 px frames
OVERFIT_CONFIG = TinyTrainConfig(steps=200, batch_size=6, lr=2e-3, flip=False, aligned_init=True, seed=0, threads=2)

# CI replays the same examples every run (a red CI must be reproducible); local runs keep exploring.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# Two cores: keep torch from oversubscribing when tests run beside brokers and helper processes.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny Florence-2 for TINY_CLASSES in the save_pretrained layout."""
    from finetune.tiny import build_tiny_model

    return build_tiny_model(TINY_CLASSES, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def overfit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SyntheticFrame]]:
    """A tiny model trained from scratch (the tiny-model recipe) on six synthetic frames with one or two defects each:
    a model that has really memorised what those frames contain, unlike a random one."""
    from agent.capture.synthetic import SyntheticGenerator
    from finetune.tiny import build_tiny_model
    from finetune.tiny_train.trainer import train_tiny

    frames = SyntheticGenerator(seed=7, size=128, max_defects=2, defect_free_fraction=0.0).frames(6)
    model_dir = build_tiny_model(TINY_CLASSES, tmp_path_factory.mktemp("overfit") / "model", OVERFIT_SPEC)
    train_tiny(model_dir, frames, OVERFIT_CONFIG)
    return model_dir, frames
