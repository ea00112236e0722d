"""The recalibration run end to end on synthetic data: promote a better adapter, reject a worse one and one that
changes nothing, refuse bad ones, report progress, stop on a cancel.

The golden set here is the labelled frames themselves: on two CPU cores a tiny model cannot learn to generalise to
new frames within a test, so these tests check the run's plumbing and its gate (a candidate that is better on the
golden set is promoted, a worse one is not), not that fine-tuning generalises.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
from agent.detections import Detections
from agent.learn.queue import LearningQueue
from agent.runs import new_run_id, read_progress
from agent.statedir import StateDir
from agent.store.model_store import ModelStore
from calibration.evaluation import GoldenResult
from calibration.golden import GoldenSet
from calibration.report import Outcome
from calibration.run import Recalibration, RunOptions, recalibrate, train_config
from finetune.data.dataset import Dataset, Sample
from finetune.metrics import score_predictions
from tests.finetune.lora_helpers import CLASSES, FAST_LORA, frames, localising_base, write_set

TRAIN = {k: v for k, v in asdict(FAST_LORA).items() if k in ("max_steps", "batch_size", "lr", "warmup_steps",
                                                             "loc_sigma", "gradient_checkpointing")}


def fill_queue(state_dir: Path, items: list[SyntheticFrame], shift: int = 0, reviewer: str | None = "tech",
               golden: list[SyntheticFrame] | None = None) -> None:
    """Queue the frames and label each with its true boxes (moved by `shift` pixels: deliberately wrong labels), as
    reviewed by `reviewer` (None: unverified): `items` in the training set, `golden` in the golden set."""
    queue = LearningQueue(StateDir(state_dir).queue, QueueConfig(per_minute=1000, per_hour=1000, per_day=1000))
    queue.purge(all=True)
    for item, is_golden in [(i, False) for i in items] + [(i, True) for i in golden or []]:
        frame = Frame("cam0", item.index, datetime.now(timezone.utc), item.image)
        unsure = item.detections[np.zeros(len(item.detections), dtype=bool)]  # the model saw nothing
        entry = queue.offer(frame, unsure, {c: 0.5 for c in CLASSES}, flagged=True).entry
        assert entry is not None
        truth = item.detections
        moved = np.clip((truth.xyxy + shift) % 64, 0, 64)
        labels = type(truth)(np.sort(moved.reshape(-1, 2, 2), axis=1).reshape(-1, 4) if shift else truth.xyxy,
                             truth.class_id, truth.score, truth.class_names, truth.image_size)
        queue.set_status(entry.id, "labelled", labels, reviewer=reviewer)
        queue.set_golden(entry.id, is_golden)
    queue.close()


def settings_for(tmp: Path, base: Path, golden: Path | None, **recalibration: Any) -> Settings:
    config = {"state_dir": str(tmp / "state"), "model": {"path": str(base), "classes": list(CLASSES), "device": "cpu"},
              "recalibration": {"golden_set": str(golden) if golden else None, "ap_margin": 0.05,
                                "target_precision": 0.8, "publish_events": False, "lora_r": 16, "lora_alpha": 32,
                                "min_golden_per_class": 1, "bootstrap_resamples": 50, **recalibration}}
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


def golden_results(tmp: Path, *hits: int) -> tuple[GoldenSet, list[GoldenResult]]:
    """Six golden frames with one scratch each, and per entry of `hits` a model that finds the first `hits` of them."""
    truth = [Detections.from_labels(["scratch"], [[8, 8, 30, 30]], CLASSES, (64, 64)) for _ in range(6)]
    golden = GoldenSet(Dataset(CLASSES, [Sample(tmp / f"{i}.png", t) for i, t in enumerate(truth)]), list(range(6)))
    results = []
    for count in hits:
        predictions = [t if i < count else t[np.zeros(1, dtype=bool)] for i, t in enumerate(truth)]
        results.append(GoldenResult(score_predictions(truth, predictions, CLASSES), predictions))
    return golden, results


def test_the_training_recipe_flows_from_the_config_and_a_runs_overrides_win() -> None:
    from agent.config.recalibration import RecalibrationConfig
    from finetune.train.config import AugmentSettings

    default = train_config(RecalibrationConfig(), RunOptions())
    assert default.augment is None and default.hard_fraction == 0.0 and default.schedule == "cosine"
    assert default.lora.vision is False  # a first adapter adapts the text side only unless the config says so
    assert default.loc_sigma == 0.0 and default.min_steps == 0
    cfg = RecalibrationConfig(augment=True, hard_examples=0.2, schedule="three-stage", lr=3e-4, lora_vision=True,
                              loc_sigma=1.5, lora_whole=["vision_tower"], min_steps=600)
    config = train_config(cfg, RunOptions())
    assert config.augment == AugmentSettings() and config.hard_fraction == 0.2 and config.schedule == "three-stage"
    assert config.lora.vision is True and config.loc_sigma == 1.5 and config.lora.whole == ("vision_tower",)
    assert default.lora.whole == () and config.min_steps == 600
    assert config.lr == 3e-4 and config.eval_map is False
    assert train_config(cfg, RunOptions(train_overrides={"schedule": "cosine"})).schedule == "cosine"


def test_the_gate_step_judges_the_reports_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    run = Recalibration(settings_for(tmp_path, tmp_path / "base", tmp_path / "golden"), RunOptions())
    golden, (worse, better) = golden_results(tmp_path, 2, 6)
    assert run._gate(golden, {"current": worse, "candidate": better})
    assert run.report.gate["map"]["candidate"] == better.report.map and run.report.gate["rule"] == "improvement"
    assert not run._gate(golden, {"current": better, "candidate": worse})
    lost = float(better.report.per_class["scratch"] or 0) - float(worse.report.per_class["scratch"] or 0)
    assert run.report.outcome is Outcome.REJECTED and f"loses {lost:.3f} AP" in run.report.reason
    assert run.report.gate["rule"] == "class_margin"


def test_a_candidate_that_changes_nothing_is_never_promoted(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    run = Recalibration(settings_for(tmp_path, tmp_path / "base", None), RunOptions())
    golden, (same,) = golden_results(tmp_path, 4)
    assert not run._gate(golden, {"current": same, "candidate": same})
    gate = run.report.gate
    assert gate["map50"]["current"] == gate["map50"]["candidate"] and gate["rule"] == "no_improvement"
    assert gate["interval"]["low"] == gate["interval"]["high"] == 0.0
    assert "does not improve (+0.000)" in run.report.reason and "keeps serving" in run.report.reason


def test_the_thresholds_step_calibrates_scores_first_and_the_promoted_version_serves_them(tmp_path: Path) -> None:
    """40 golden frames with one scratch each; the candidate finds every one at a raw score of 0.30-0.34 and adds a
    false box at 0.25-0.29: half its boxes are real, but its scores say ~30 %."""
    import cv2

    from agent.model_choice import choose_model
    from calibration.evaluation import Contender
    from tests.agent.store.helpers import make_adapter, make_base

    base = make_base(tmp_path / "base")
    truth = [Detections.from_labels(["scratch"], [[8, 8, 30, 30]], CLASSES, (64, 64)) for _ in range(40)]
    samples = []
    for i, t in enumerate(truth):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((64, 64, 3), dtype=np.uint8))
        samples.append(Sample(tmp_path / f"{i}.png", t))
    golden = GoldenSet(Dataset(CLASSES, samples), list(range(40)))
    raw = [Detections.from_labels(["scratch", "scratch"], [[8, 8, 30, 30], [40, 40, 60, 60]], CLASSES, (64, 64),
                                  score=[0.30 + (i % 5) / 100, 0.25 + (i % 5) / 100]) for i in range(40)]
    run = Recalibration(settings_for(tmp_path, base, None), RunOptions())
    run.report.run_dir.mkdir(parents=True)
    candidate = Contender("candidate", None, run._thresholds({}))
    result = GoldenResult(score_predictions(truth, raw, CLASSES), raw)

    fits, candidate, result = run._fit_thresholds(golden, candidate, result, run._thresholds({}))
    scratch = candidate.calibration.classes["scratch"]
    hole = candidate.calibration.classes["hole"]  # no hole boxes: the map of all classes' boxes pooled, and says so
    assert scratch.fitted and hole.fitted and hole.reason.startswith("no boxes of its own: Platt scaling on all")
    assert run.report.thresholds["score_calibration"] == candidate.calibration.to_json()
    ece = run.report.thresholds["golden_ece"]
    assert ece["raw"] > 0.15 and ece["calibrated"] < 0.1
    expected = [candidate.calibration.apply(d).score.tolist() for d in raw]
    assert [d.score.tolist() for d in result.predictions] == expected
    calibrated_scores = {round(float(s), 6) for d in result.predictions for s in d.score}
    assert fits["scratch"].fitted and round(fits["scratch"].threshold, 6) in calibrated_scores  # on calibrated ones
    assert (run.report.run_dir / "candidate" / "reliability.png").is_file()

    run.report.data["golden"] = {"frames": 40}
    run.store.set_base(base)
    version = run._promote(make_adapter(tmp_path / "adapter"), fits, candidate.calibration, result.report)
    choice = choose_model(run.settings)
    assert choice.source == f"store:{version}" and choice.calibration == candidate.calibration


def test_without_labelled_frames_there_is_nothing_to_learn(tiny_model_dir: Path, tmp_path: Path) -> None:
    write_set(frames(8, 1), tmp_path / "golden")
    settings = settings_for(tmp_path, tiny_model_dir, tmp_path / "golden")
    fill_queue(settings.state_dir, [])
    report = recalibrate(settings)
    assert report.outcome is Outcome.NOTHING_TO_LEARN and "0 labelled queue frame(s)" in report.reason
    assert ModelStore.in_state_dir(settings.state_dir).current() is None
    assert json.loads((report.run_dir / "report.json").read_text())["exit_code"] == 4


def test_frames_nobody_verified_never_train(tiny_model_dir: Path, tmp_path: Path) -> None:
    write_set(frames(8, 4), tmp_path / "golden")
    settings = settings_for(tmp_path, tiny_model_dir, tmp_path / "golden")
    fill_queue(settings.state_dir, frames(8, 4), reviewer=None)  # e.g. an import of untouched suggestions
    report = recalibrate(settings)
    assert report.outcome is Outcome.NOTHING_TO_LEARN and "0 labelled queue frame(s)" in report.reason


def test_a_golden_set_too_small_per_class_refuses_to_start(tiny_model_dir: Path, tmp_path: Path) -> None:
    items = frames(8, 4)
    write_set(items[:1], tmp_path / "golden")  # one external golden frame
    settings = settings_for(tmp_path, tiny_model_dir, tmp_path / "golden", min_golden_per_class=2)
    fill_queue(settings.state_dir, items[2:], golden=items[1:2])  # and one verified golden frame of the queue
    report = recalibrate(settings)
    assert report.outcome is Outcome.GOLDEN_TOO_SMALL, report.reason
    boxes = report.data["golden"]["boxes"]
    assert sum(boxes.values()) == len(items[0].detections) + len(items[1].detections)
    short = [f"{name} {count}" for name, count in boxes.items() if count < 2]
    assert short and f"short: {', '.join(short)} (1 verified golden queue frame(s) + 1 from " in report.reason
    assert [s["step"] for s in report.steps] == ["snapshot"]  # nothing trained
    assert json.loads((report.run_dir / "report.json").read_text())["exit_code"] == 5
    assert read_progress(report.run_dir).state == "finished"  # type: ignore[union-attr]


def test_progress_is_kept_current_and_a_cancel_stops_training(tiny_model_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("calibration.progress.WRITE_EVERY_S", 0.0)
    write_set(frames(8, 1), tmp_path / "golden")
    settings = settings_for(tmp_path, tiny_model_dir, tmp_path / "golden", min_golden_per_class=0)
    fill_queue(settings.state_dir, frames(8, 4))
    run_id = new_run_id()
    recalibration = Recalibration(settings, RunOptions(run_id=run_id, train_overrides={**TRAIN, "max_steps": 40}))
    assert recalibration.report.run_dir == StateDir(settings.state_dir).recalibration / run_id
    seen: list[Any] = []
    hook = recalibration.watch.training_step

    def training_step(step: int, total: int, metrics: dict[str, float]) -> None:
        hook(step, total, metrics)
        seen.append(read_progress(recalibration.report.run_dir))
        if step == 2:
            recalibration.cancel()

    recalibration.watch.training_step = training_step  # type: ignore[method-assign]
    report = recalibration.run()
    assert report.outcome is Outcome.CANCELLED and "cancelled" in report.reason
    first = seen[0]
    assert (first.stage, first.state, first.step, first.total_steps) == ("train", "running", 1, 40)
    assert first.loss is not None and first.eta_s is not None and first.pid == os.getpid()
    final = read_progress(report.run_dir)
    assert final is not None and (final.state, final.stage, final.step) == ("cancelled", "train", 2)
    assert report.steps[-1] == {**report.steps[-1], "step": "train", "state": "cancelled"}
    assert json.loads((report.run_dir / "report.json").read_text())["exit_code"] == 6
    assert ModelStore.in_state_dir(settings.state_dir).versions() == []


def test_sigterm_cancels_a_running_recalibration_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    write_set(frames(8, 1), tmp_path / "golden")
    settings_for(tmp_path, tiny_model_dir, tmp_path / "golden", min_golden_per_class=0, epochs=1000, batch_size=1)
    fill_queue(tmp_path / "state", frames(8, 2))
    run_id = new_run_id()
    run_dir = StateDir(tmp_path / "state").recalibration / run_id
    process = subprocess.Popen([sys.executable, "-m", "agent.cli", "recalibrate", "--config",
                                str(tmp_path / "config.yaml"), "--run-id", run_id],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            progress = read_progress(run_dir)
            if progress is not None and progress.stage == "train" and progress.step >= 1:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.communicate()[0].decode()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 6, output
    assert read_progress(run_dir).state == "cancelled"  # type: ignore[union-attr]
    assert json.loads((run_dir / "report.json").read_text())["outcome"] == "cancelled"
    assert ModelStore.in_state_dir(tmp_path / "state").current() is None


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
    assert_report_shows_the_comparison(saved, first.run_dir)
    assert read_progress(first.run_dir).state == "finished"  # type: ignore[union-attr]

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


def assert_report_shows_the_comparison(saved: dict[str, Any], run_dir: Path) -> None:
    """What the station's report page shows: both models' scores, plots, the gate's decision, verdict changes."""
    for name in ("current", "candidate"):
        scores = saved["evaluation"][name]
        assert {"map", "map50", "per_class", "per_class_ap50"} <= set(scores)
        for plot in ("pr_curves", "confusion_matrix", "reliability"):
            assert (run_dir / saved["files"][f"{name}_{plot}"]).is_file()
    assert saved["evaluation"]["backend"] == "torch-eager"
    gate = saved["gate"]
    assert gate["passed"] and gate["rule"] == "improvement" and gate["reasons"]
    assert 0 < gate["interval"]["low"] <= gate["interval"]["delta"] <= gate["interval"]["high"]
    verdicts = saved["verdicts"]
    assert verdicts["frames"] == saved["data"]["golden"]["frames"] == 4
    for row in verdicts["frames_changed"]:
        assert row["current"] != row["candidate"] and (run_dir / row["image"]).is_file()


@pytest.mark.slow
def test_an_adapter_that_learnt_nothing_is_rejected(line: dict[str, Any], tmp_path: Path) -> None:
    settings = settings_for(tmp_path, line["settings"].model.path, line["tmp"] / "golden")
    fill_queue(settings.state_dir, line["items"])
    nothing = {**TRAIN, "max_steps": 1, "lr": 1e-30}  # LoRA B starts at zero and stays (as good as) zero
    report = recalibrate(settings, RunOptions(train_overrides=nothing))
    assert report.outcome is Outcome.REJECTED and report.gate["rule"] == "no_improvement", report.reason
    assert report.gate["map50"]["candidate"] == report.gate["map50"]["current"]
    assert ModelStore.in_state_dir(settings.state_dir).current() is None


@pytest.mark.slow
def test_on_an_onnx_line_the_promoted_export_is_stored_and_served(line: dict[str, Any], tmp_path: Path) -> None:
    from agent.detector.onnx import OnnxDetector
    from agent.model_choice import choose_model, detector_from_settings
    from finetune.export import export_onnx

    base = line["settings"].model.path
    served = export_onnx(base, tmp_path / "base-onnx")  # what the line serves before any recalibration
    settings = settings_for(tmp_path, served, line["tmp"] / "golden", base_model=str(base), onnx_precision="fp16")
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"backend": "onnx"})})
    fill_queue(settings.state_dir, line["items"])
    report = recalibrate(settings, RunOptions(train_overrides=TRAIN))
    assert report.outcome is Outcome.PROMOTED, report.reason
    assert "export" in [s["step"] for s in report.steps] and report.evaluation["backend"] == "onnx"
    store = ModelStore.in_state_dir(settings.state_dir)
    export = store.export_path(report.candidate)  # type: ignore[arg-type]
    assert export is not None and json.loads((export / "export.json").read_text())["precision"] == "fp16"

    choice = choose_model(settings)  # what the daemon does at start-up and on every reload
    detector = detector_from_settings(settings, choice)
    assert isinstance(detector, OnnxDetector) and choice.export == export
    assert detector.version.endswith(f"+{report.candidate}") and detector.precision == "fp16"


@pytest.mark.slow
def test_without_promote_a_passing_candidate_is_stored_for_a_person_to_promote(line: dict[str, Any],
                                                                                tmp_path: Path) -> None:
    settings = settings_for(tmp_path, line["settings"].model.path, line["tmp"] / "golden")
    fill_queue(settings.state_dir, line["items"])
    report = recalibrate(settings, RunOptions(train_overrides=TRAIN, promote=False))
    assert report.outcome is Outcome.PASSED and int(report.outcome) == 7, report.reason
    store = ModelStore.in_state_dir(settings.state_dir)
    assert store.versions() == [report.candidate] == ["v0001"] and store.current() is None  # stored, not serving
    assert "not promoted" in report.reason and "notify" not in [s["step"] for s in report.steps]
    assert json.loads((report.run_dir / "report.json").read_text())["outcome"] == "passed"


@pytest.mark.slow
def test_a_paligemma_line_recalibrates_with_its_familys_trainer(tiny_paligemma_dir: Path, tmp_path: Path) -> None:
    items = frames(8, 4)
    write_set(items, tmp_path / "golden")
    settings = settings_for(tmp_path, tiny_paligemma_dir, tmp_path / "golden", min_golden_per_class=0)
    fill_queue(settings.state_dir, items)
    report = recalibrate(settings, RunOptions(train_overrides={**TRAIN, "max_steps": 3, "lr": 1e-2}))
    train = next(step for step in report.steps if step["step"] == "train")
    assert train["state"] == "done" and train["steps"] == 3, report.steps
    assert report.outcome in (Outcome.PROMOTED, Outcome.REJECTED), report.reason  # the gate decided, nothing failed
    adapter_config = json.loads((report.run_dir / "candidate" / "adapter_config.json").read_text())
    assert "o_proj" in adapter_config["target_modules"]  # Gemma 2's projections: PaliGemma's LoRA targets
