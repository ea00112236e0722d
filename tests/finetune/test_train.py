"""LoRA fine-tuning: batches, schedule, and that a run learns, writes a store-ready adapter and survives a kill."""

from __future__ import annotations

import itertools
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
import torch
from typer.testing import CliRunner

from agent.detections import Detections
from finetune.train import (
    TrainConfig,
    TrainError,
    amp_dtype,
    batch_indices,
    lr_factor,
    pad_prompts,
    target_for,
    train_lora,
)
from tests.finetune.lora_helpers import CLASSES, FAST_LORA, boxes_found, frames, localising_base, write_set


# ----- pieces -------------------------------------------------------------------------------------------------------
def test_each_epoch_visits_every_sample_once_in_a_seeded_order() -> None:
    epoch = np.concatenate([batch_indices(10, 4, seed=3, step=s) for s in range(3)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert np.array_equal(batch_indices(10, 4, 3, 4), batch_indices(10, 4, 3, 4))  # resumable: pure function
    assert not np.array_equal(epoch, np.concatenate([batch_indices(10, 4, 3, s) for s in range(3, 6)]))


def test_learning_rate_warms_up_then_follows_a_cosine_to_zero() -> None:
    factors = [lr_factor(s, warmup=5, total=50) for s in range(51)]
    assert factors[0] == pytest.approx(0.2) and factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))
    assert factors[50] == pytest.approx(0.0, abs=1e-9)


def test_suffix_order_augmentation_shuffles_boxes_and_grounding_asks_for_one_class() -> None:
    dets = Detections.from_labels(["hole", "scratch", "hole"], [[50, 50, 60, 60], [0, 0, 10, 10], [20, 0, 30, 8]],
                                  CLASSES, (100, 100))
    rng = np.random.default_rng(0)
    assert target_for("<OD>", dets, rng, shuffle=False)[1].startswith("scratch<loc_0>")
    orders = {target_for("<OD>", dets, rng, shuffle=True)[1] for _ in range(30)}
    assert len(orders) > 1
    prompt, text = target_for("<CAPTION_TO_PHRASE_GROUNDING>", dets, np.random.default_rng(1), shuffle=False)
    label = prompt.removeprefix("<CAPTION_TO_PHRASE_GROUNDING>")
    assert label in {"hole", "scratch"} and text.count("<loc_") == 4 * dets.labels.count(label)
    empty = Detections.empty(CLASSES, (100, 100))
    assert target_for("<CAPTION_TO_PHRASE_GROUNDING>", empty, rng, shuffle=False) == ("<OD>", "")


def test_prompts_are_right_padded_with_an_attention_mask() -> None:
    ids, mask = pad_prompts([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_mixed_precision_is_cuda_only() -> None:
    assert amp_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(TrainError, match="amp='bf16' needs a CUDA device"):
        amp_dtype("bf16", torch.device("cpu"))


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(TrainError, match="batch_size=0"):
        TrainConfig(batch_size=0)
    with pytest.raises(TrainError, match="<CAPTION>"):
        TrainConfig(tasks=("<CAPTION>",))


# ----- training on the tiny model -----------------------------------------------------------------------------------
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
    from agent.store import ModelStore, base_identity

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
    child = subprocess.Popen([sys.executable, "-m", "agent.cli", *args], cwd=Path(__file__).parents[2],
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
