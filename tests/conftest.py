"""Shared fixtures: a tiny Florence-2 built once per session; the private Mosquitto broker plugin."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest_plugins = ["tests.fixtures.broker"]

TINY_CLASSES = ("scratch", "hole", "stain")

# Two cores: keep torch from oversubscribing when tests run beside brokers and helper processes.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny Florence-2 for TINY_CLASSES in the save_pretrained layout."""
    from finetune.tiny import build_tiny_model

    return build_tiny_model(TINY_CLASSES, tmp_path_factory.mktemp("tiny") / "model")
