"""The recalibration run end to end on synthetic data: promote a better adapter, reject a worse one, refuse bad ones.

The golden set here is the labelled frames themselves: on two CPU cores a tiny model cannot learn to generalise to
new frames within a test, so these tests check the run's plumbing and its gate (a candidate that is better on the
golden set is promoted, a worse one is not), not that fine-tuning generalises.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from agent.capture.synthetic import SyntheticFrame
from agent.capture.worker import Frame
from agent.config import QueueConfig, Settings, load_settings
from agent.learn.queue import LearningQueue
from agent.store import ModelStore
from calibration.run import Outcome, RunOptions, compare, recalibrate
from tests.finetune.lora_helpers import CLASSES, FAST_LORA, frames, localising_base, write_set

TRAIN = {k: v for k, v in asdict(FAST_LORA).items() if k in ("max_steps", "batch_size", "lr", "warmup_steps",
                                                             "loc_sigma", "gradient_checkpointing")}


def fill_queue(state_dir: Path, items: list[SyntheticFrame], shift: int = 0) -> None:
    """Queue the frames and label each with its true boxes (moved by `shift` pixels: deliberately wrong labels)."""
    queue = LearningQueue(state_dir / "queue", QueueConfig(per_minute=1000, per_hour=1000, per_day=1000))
    queue.purge(all=True)
    for item in items:
        frame = Frame("cam0", item.index, datetime.now(timezone.utc), item.image)
        unsure = item.detections[np.zeros(len(item.detections), dtype=bool)]  # the model saw nothing
        entry = queue.offer(frame, unsure, {c: 0.5 for c in CLASSES}, flagged=True).entry
        assert entry is not None
        truth = item.detections
        moved = np.clip((truth.xyxy + shift) % 64, 0, 64)
        labels = type(truth)(np.sort(moved.reshape(-1, 2, 2), axis=1).reshape(-1, 4) if shift else truth.xyxy,
                             truth.class_id, truth.score, truth.class_names, truth.image_size)
        queue.set_status(entry.id, "labelled", labels)
    queue.close()


def settings_for(tmp: Path, base: Path, golden: Path) -> Settings:
    config = {"state_dir": str(tmp / "state"), "model": {"path": str(base), "classes": list(CLASSES), "device": "cpu"},
              "recalibration": {"golden_set": str(golden), "ap_margin": 0.05, "target_precision": 0.8,
                                "publish_events": False, "lora_r": 16, "lora_alpha": 32}}
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    return load_settings(tmp / "config.yaml")


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("line")
    items = frames(8, 4)
    write_set(items, tmp / "golden")
    return {"tmp": tmp, "items": items, "settings": settings_for(tmp, localising_base(tmp / "base"), tmp / "golden")}


def run(line: dict[str, Any], **options: Any) -> Any:
    return recalibrate(line["settings"], RunOptions(train_overrides=TRAIN, **options))


def test_the_gate_names_the_class_that_lost_ap() -> None:
    current = {"map": 0.5, "map50": 0.6, "per_class": {"scratch": 0.6, "hole": 0.4, "stain": None}}
    candidate = {"map": 0.52, "map50": 0.6, "per_class": {"scratch": 0.5, "hole": 0.54, "stain": 0.3}}
    gate = compare(current, candidate, margin=0.05)
    assert not gate["passed"] and gate["failures"] == ["class 'scratch' loses 0.100 AP (0.600 -> 0.500; margin 0.05)"]
    assert compare(current, candidate, margin=0.15)["passed"]
    assert "mean AP drops" in compare(candidate, current, margin=1.0)["failures"][0]


def test_without_labelled_frames_there_is_nothing_to_learn(tiny_model_dir: Path, tmp_path: Path) -> None:
    write_set(frames(8, 1), tmp_path / "golden")
    settings = settings_for(tmp_path, tiny_model_dir, tmp_path / "golden")
    fill_queue(settings.state_dir, [])
    report = recalibrate(settings)
    assert report.outcome is Outcome.NOTHING_TO_LEARN and "0 labelled queue frame(s)" in report.reason
    assert ModelStore.in_state_dir(settings.state_dir).current() is None
    assert json.loads((report.run_dir / "report.json").read_text())["exit_code"] == 4


def test_a_missing_golden_set_fails_before_anything_is_trained(tiny_model_dir: Path, tmp_path: Path) -> None:
    report = recalibrate(settings_for(tmp_path, tiny_model_dir, tmp_path / "nowhere"))
    assert report.outcome is Outcome.FAILED and f"golden set {tmp_path / 'nowhere'} does not exist" in report.reason


@pytest.mark.slow
def test_a_better_adapter_is_promoted_and_a_worse_one_is_rejected(line: dict[str, Any]) -> None:
    state = line["settings"].state_dir
    store = ModelStore.in_state_dir(state)
    fill_queue(state, line["items"])
    first = run(line)
    assert first.outcome is Outcome.PROMOTED, first.reason
    assert store.current() == first.candidate == "v0001" and first.current is None
    assert first.gate["map"]["candidate"] > first.gate["map"]["current"]
    manifest = store.manifest("v0001")
    assert set(manifest.thresholds) == set(CLASSES) and manifest.metrics["map"] == first.gate["map"]["candidate"]
    saved = json.loads((first.run_dir / "report.json").read_text())
    assert saved["outcome"] == "promoted" and saved["candidate"] == "v0001"
    assert "| **mean** |" in (first.run_dir / "report.md").read_text()
    assert [s["step"] for s in saved["steps"]] == ["snapshot", "replay", "train", "evaluate", "thresholds", "gate",
                                                   "promote", "notify"]

    fill_queue(state, line["items"], shift=23)  # a careless review: every box moved off its defect
    second = run(line)
    assert second.outcome is Outcome.REJECTED and second.current == "v0001"
    assert "loses" in second.reason and "keeps serving" in second.reason
    assert store.current() == "v0001" and store.versions() == ["v0001"]
    assert json.loads((second.run_dir / "report.json").read_text())["exit_code"] == 3


@pytest.mark.slow
def test_a_corrupt_current_adapter_fails_the_run_and_changes_nothing(line: dict[str, Any]) -> None:
    store = ModelStore.in_state_dir(line["settings"].state_dir)
    if store.current() is None:
        pytest.skip("needs the promoted adapter of the previous test")
    weights = store.current_path() / "adapter_model.safetensors"  # type: ignore[operator]
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-8] + b"corrupt!")
        report = run(line)
        assert report.outcome is Outcome.FAILED
        assert "is corrupt: sha256" in report.reason and store.current() == "v0001"
    finally:
        weights.write_bytes(original)
