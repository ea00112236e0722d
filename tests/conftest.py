"""Shared fixtures: a tiny Florence-2 and a tiny PaliGemma 2 built once per session; the private Mosquitto broker
plugin."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from hypothesis import settings as hypothesis_settings

from agent.capture.synthetic import SyntheticFrame
from finetune.paligemma.tiny import TinyPaliSpec
from finetune.tiny import TinySpec
from finetune.tiny_train.trainer import TinyTrainConfig

pytest_plugins = ["tests.fixtures.broker", "tests.fixtures.genicam", "tests.fixtures.maskrcnn"]

TINY_CLASSES = ("scratch", "hole", "stain")
OVERFIT_SPEC = TinySpec(image_size=128, patch_strides=(4, 2, 1))  # 16 x 16 token grid on 128 px frames
TINY_PALI_SPEC = TinyPaliSpec(image_size=64, patch_size=8)
OVERFIT_CONFIG = TinyTrainConfig(steps=200, batch_size=6, lr=2e-3, flip=False, aligned_init=True, seed=0, threads=2)

# CI replays the same examples every run (a red CI must be reproducible); local runs keep exploring.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# Two cores: keep torch from oversubscribing when tests run beside brokers and helper processes (and beside each
# other: each of `make test`'s two pytest-xdist workers gets one thread).
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny Florence-2 for TINY_CLASSES in the save_pretrained layout."""
    from finetune.tiny import build_tiny_model

    return build_tiny_model(TINY_CLASSES, tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_paligemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny PaliGemma 2 for TINY_CLASSES (64 px input, 8 px patches: 64 image tokens)."""
    from finetune.paligemma.tiny import build_tiny_paligemma

    return build_tiny_paligemma(TINY_CLASSES, tmp_path_factory.mktemp("paligemma") / "model", TINY_PALI_SPEC)


@pytest.fixture(scope="session")
def overfit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SyntheticFrame]]:
    """A tiny model trained from scratch (the tiny-model recipe) on six synthetic frames with one or two defects each:
    a model that has really memorised what those frames contain, unlike a random one.

    Trained once per test run: parallel workers (pytest-xdist) share the run's temp root, and the first one to take
    the lock trains while the others wait and then read the finished model (moved into place only when complete)."""
    from agent.capture.synthetic import SyntheticGenerator
    from finetune.tiny import build_tiny_model
    from finetune.tiny_train.trainer import train_tiny

    frames = SyntheticGenerator(seed=7, size=128, max_defects=2, defect_free_fraction=0.0).frames(6)
    shared = run_temp_root(tmp_path_factory)
    model_dir = shared / "overfit-model"
    with FileLock(str(shared / "overfit.lock")):
        if not model_dir.is_dir():
            staging = build_tiny_model(TINY_CLASSES, tmp_path_factory.mktemp("overfit") / "model", OVERFIT_SPEC)
            threads = torch.get_num_threads()
            train_tiny(staging, frames, OVERFIT_CONFIG)  # sets its own thread count: give the worker its own back
            torch.set_num_threads(threads)
            shutil.move(staging, model_dir)
    return model_dir, frames


def run_temp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's temp root: the folder above the workers' own under pytest-xdist, else the session's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with slow or fault-injection tests run first, each file's tests in their own order.

    `make test` hands whole files to its two workers in collection order (`--dist loadfile --no-loadscope-reorder`):
    with the long files first, the short ones fill in at the end and both workers finish together, instead of one
    worker running a single long file (twenty SIGKILLs, a full-size ONNX export) alone after the other is done."""
    heavy = {item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("faults")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: the order within each group is kept
