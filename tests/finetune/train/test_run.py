"""`train_lora`: a run learns, writes a store-ready adapter and its run directory, and survives a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from finetune.train.run import plan, train_lora
from tests.finetune.lora_helpers import FAST_LORA, boxes_found, frames, localising_base, write_set


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return localising_base(tmp_path_factory.mktemp("base") / "model")


@pytest.mark.slow
def test_lora_lowers_the_loss_and_reproduces_the_boxes_of_its_frames(base: Path, tmp_path: Path) -> None:
    """LoRA (rank 16, vision tower included) on a model that localises, on 4 frames it was never trained on.

    What this measures: the adapter learns these frames (memorisation through LoRA, merged for inference by the
    detector). It does not measure generalisation to new frames, which needs far more data and steps than a test.
    """
    from agent.detector.florence2 import Florence2Detector

    new = frames(8, 4)
    data = write_set(new, tmp_path / "data")
    before = boxes_found(Florence2Detector(base).detect([f.image for f in new]), [f.detections for f in new])
    result = train_lora(base, data, tmp_path / "adapter", FAST_LORA, val_set=data)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.2 * losses[0]
    assert result.epochs[-1]["val_loss"] < 0.2 * losses[0]
    after = boxes_found(Florence2Detector(base, tmp_path / "adapter").detect([f.image for f in new]),
                        [f.detections for f in new])
    assert after[0] == after[1] > before[0], (before, after)


@pytest.mark.slow
def test_the_adapter_and_manifest_are_what_the_model_store_takes(base: Path, tmp_path: Path) -> None:
    from agent.store.files import base_identity
    from agent.store.model_store import ModelStore

    data = write_set(frames(8, 4), tmp_path / "data")
    config = replace(FAST_LORA, max_steps=4, eval_map=True)
    result = train_lora(base, data, tmp_path / "adapter", config, val_set=data)
    manifest = json.loads((tmp_path / "adapter" / "manifest.json").read_text())
    assert manifest["base"] == base_identity(base) and manifest["parent"] is None
    assert manifest["data_hash"].startswith("sha256:") and manifest["metrics"]["steps"] == 4
    assert 0.0 <= manifest["metrics"]["val_map"] <= 1.0
    run = result.run_dir
    assert {"config.json", "metrics.json", "training.png"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "metrics.json").read_text())["epochs"][-1]["map"] == manifest["metrics"]["val_map"]
    store = ModelStore(tmp_path / "store")
    store.set_base(base)
    version = store.add_adapter(tmp_path / "adapter")
    assert store.manifest(version).data_hash == manifest["data_hash"]
    store.promote(version)
    assert store.current() == version


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(base: Path, tmp_path: Path) -> None:
    from agent.cli import app

    data = tmp_path / "data"
    write_set(frames(8, 4), data)
    args = ["finetune", "--model", str(base), "--data", str(data), "--out", str(tmp_path / "adapter"),
            "--max-steps", "12", "--checkpoint-every", "3", "--batch", "4", "--lr", "3e-3", "--warmup", "2",
            "--threads", "1"]
    child = subprocess.Popen([sys.executable, "-m", "agent.cli", *args], cwd=Path(__file__).parents[3],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pointer = tmp_path / "adapter.run" / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 240
    while not pointer.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert pointer.exists(), "the child never wrote a checkpoint"
    killed_at = json.loads(pointer.read_text())["step"]
    assert 3 <= killed_at < 12 and not (tmp_path / "adapter" / "manifest.json").exists()
    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["resumed_from"] == killed_at and summary["steps"] == 12
    history = json.loads((tmp_path / "adapter.run" / "metrics.json").read_text())["history"]
    steps = [h["step"] for h in history]
    assert steps == sorted(steps) and steps[-1] == 12 and len(set(steps)) == len(steps)
    assert history[-1]["loss"] < history[0]["loss"] and np.isfinite(history[-1]["loss"])


def test_a_resumed_three_stage_run_with_the_recipe_on_follows_the_uninterrupted_one(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    """Stage, learning rate, augmentation and mining are functions of the step: resuming at step 3 of 6 reproduces
    the rates and losses of the run that was not interrupted."""
    from finetune.lora import LoraSettings
    from finetune.train.config import AugmentSettings, TrainConfig

    data = write_set(frames(8, 4), tmp_path / "data")
    config = TrainConfig(max_steps=6, batch_size=2, warmup_steps=0, schedule="three-stage", augment=AugmentSettings(),
                         hard_fraction=0.5, eval_map=False, gradient_checkpointing=False, checkpoint_every=3,
                         log_every=1, device="cpu", lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    whole = train_lora(tiny_model_dir, data, tmp_path / "adapter", config)
    assert [h["lr"] for h in whole.history] == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 1e-5, 1e-5])
    resumed = train_lora(tiny_model_dir, data, tmp_path / "adapter", config, resume=True)
    assert resumed.resumed_from == 3
    assert [h["lr"] for h in resumed.history[3:]] == pytest.approx([h["lr"] for h in whole.history[3:]])
    assert [h["loss"] for h in resumed.history[3:]] == pytest.approx([h["loss"] for h in whole.history[3:]], rel=1e-4)


def test_a_small_snapshot_trains_min_steps_in_more_epochs_and_max_steps_still_caps() -> None:
    from finetune.train.config import TrainConfig

    by_epochs = plan(200, TrainConfig(epochs=24, batch_size=16))
    assert (by_epochs.steps, by_epochs.epochs) == (312, 24)
    stretched = plan(200, TrainConfig(epochs=24, batch_size=16, min_steps=600))
    assert (stretched.steps, stretched.per_epoch, stretched.epochs) == (600, 13, 47)
    assert plan(400, TrainConfig(epochs=24, batch_size=16, min_steps=300)).steps == 600  # epochs give more already
    assert plan(200, TrainConfig(epochs=24, batch_size=16, min_steps=600, max_steps=50)).steps == 50
