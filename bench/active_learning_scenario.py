"""The drift scenario and one grid point of `bench/active_learning.py` (see there for what is measured).

A point: the chosen pool frames go into a fresh state directory's learning queue, each labelled with its ground
truth and verified (the technician's review, simulated), and `calibration.run.recalibrate` runs on it as
`edge-inspect recalibrate --no-promote` would: snapshot, replay of original frames, LoRA training from the demo
model, evaluation and gate on the external golden set. The candidate adapter it leaves in its run folder is then
scored on the held-out drifted and original frames.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from agent.capture.synthetic import SyntheticFrame, SyntheticGenerator
from agent.detections import Detections
from finetune.data.synth import write_frames

# A new, brighter lamp and defects from a new supplier that come out smaller: what the demo model never saw.
DRIFT: dict[str, Any] = {"lighting_gain": 1.4, "lighting_offset": 30.0, "defect_scale": 0.7}
SEEDS = {"pool": 9100, "drifted_test": 9200, "original_test": 9300, "golden": 9400, "replay": 9500}
REVIEWER = "bench-technician"


@dataclass(frozen=True)
class Sizes:
    pool: int
    held_out: int
    golden: int
    replay: int


@dataclass
class Scenario:
    """Everything a grid point needs that is built once: frames, the data set files, the pool's predictions."""

    model: Path
    classes: tuple[str, ...]
    work: Path
    pool: list[SyntheticFrame]
    drifted_test: list[SyntheticFrame]
    original_test: list[SyntheticFrame]
    golden_dir: Path
    replay_dir: Path
    pool_predictions: list[Detections] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    band: float = 0.15
    dedup_max_distance: int = 6
    recalibration: dict[str, Any] = field(default_factory=dict)  # the line's recalibration settings the bench changes


def scenario_frames(name: str, count: int, drifted: bool, size: int, classes: tuple[str, ...]
                    ) -> list[SyntheticFrame]:
    """The first `count` frames of the scenario's stream `name` (a key of SEEDS), drifted or original."""
    drift = DRIFT if drifted else {}
    return SyntheticGenerator(seed=SEEDS[name], size=size, classes=classes, **drift).frames(count)


def build_scenario(model: Path, classes: tuple[str, ...], size: int, sizes: Sizes, work: Path,
                   recalibration: dict[str, Any] | None = None) -> Scenario:
    """Generate the frames and write the external golden set (drifted) and the replay data (original) as JSONL."""
    def frames(name: str, count: int, drifted: bool) -> list[SyntheticFrame]:
        return scenario_frames(name, count, drifted, size, classes)

    scenario = Scenario(model, classes, work, pool=frames("pool", sizes.pool, True),
                        drifted_test=frames("drifted_test", sizes.held_out, True),
                        original_test=frames("original_test", sizes.held_out, False),
                        golden_dir=work / "golden", replay_dir=work / "replay",
                        recalibration=dict(recalibration or {}))
    write_frames(frames("golden", sizes.golden, True), classes, scenario.golden_dir, overwrite=True)
    write_frames(frames("replay", sizes.replay, False), classes, scenario.replay_dir, overwrite=True)
    return scenario


def line_settings(state_dir: Path, scenario: Scenario, seed: int, device: str) -> Any:
    """The line's config for one point, loaded the way `edge-inspect recalibrate --config` loads it."""
    from agent.config import load_settings

    config = {
        "state_dir": str(state_dir),
        "model": {"path": str(scenario.model), "classes": list(scenario.classes), "device": device},
        "queue": {"golden_fraction": 0.0, "band": scenario.band, "dedup_max_distance": scenario.dedup_max_distance},
        "recalibration": {"golden_set": str(scenario.golden_dir), "replay_data": str(scenario.replay_dir),
                          "min_golden_per_class": 1, "bootstrap_resamples": 20, "publish_events": False,
                          "notify": "none", "seed": seed, **scenario.recalibration},
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path)


def score_pool(scenario: Scenario, device: str, batch: int) -> None:
    """The demo model's unfiltered, calibrated predictions on the pool and the thresholds it judges with: what the
    daemon's samplers see on the line."""
    from agent.model_choice import choose_model, detector_from_settings, thresholds_for

    settings = line_settings(scenario.work / "scoring", scenario, 0, device)
    choice = choose_model(settings)
    detector = detector_from_settings(settings, choice)
    scenario.thresholds = thresholds_for(settings, choice).for_classes(scenario.classes)
    scenario.pool_predictions = detect(detector, scenario.pool, batch)


def detect(detector: Any, frames: Sequence[SyntheticFrame], batch: int) -> list[Detections]:
    return [d for i in range(0, len(frames), batch) for d in detector.detect([f.image for f in frames[i:i + batch]])]


def queue_verified(state_dir: Path, scenario: Scenario, picked: Sequence[int]) -> int:
    """Queue the picked pool frames with the model's boxes, then label each with its truth as verified training
    frames (the technician's review); returns how many the queue took."""
    from agent.capture.worker import Frame
    from agent.config import QueueConfig
    from agent.learn.queue import LearningQueue
    from agent.statedir import StateDir

    # every offered frame is kept: the strategy already chose them (the daemon's quota would spread them over days)
    config = QueueConfig(samplers=["random"], random_rate=1.0, per_minute=100_000, per_hour=100_000,
                         per_day=100_000, golden_fraction=0.0, dedup_max_distance=0)
    queue = LearningQueue(StateDir(state_dir).queue, config)
    taken = 0
    try:
        for position in picked:
            frame = scenario.pool[position]
            captured = Frame("cam0", position, datetime.now(timezone.utc), frame.image)
            entry = queue.offer(captured, scenario.pool_predictions[position], scenario.thresholds).entry
            if entry is None:
                continue
            queue.set_status(entry.id, "labelled", frame.detections, reviewer=REVIEWER)
            queue.set_golden(entry.id, False)
            taken += 1
    finally:
        queue.close()
    return taken


def map50_of(detector: Any, frames: Sequence[SyntheticFrame], classes: tuple[str, ...], batch: int) -> float:
    from finetune.metrics import score_predictions

    predictions = detect(detector, frames, batch)
    return round(float(score_predictions([f.detections for f in frames], predictions, classes).map50), 4)


def held_out_map50(scenario: Scenario, adapter: Path | None, device: str, batch: int) -> dict[str, float]:
    """mAP50 on the held-out drifted and original frames (raw scores: a per-class monotone calibration keeps AP)."""
    from agent.detector.factory import create_detector

    detector = create_detector("torch-eager", scenario.model, adapter, scenario.classes, device=device)
    return {"drifted": map50_of(detector, scenario.drifted_test, scenario.classes, batch),
            "original": map50_of(detector, scenario.original_test, scenario.classes, batch)}


def recalibrate_point(scenario: Scenario, picked: Sequence[int], seed: int, overrides: dict[str, Any], device: str,
                      batch: int, name: str) -> dict[str, Any]:
    """One grid point end to end; its state directory is removed afterwards (the numbers are in the result)."""
    from calibration.run import RunOptions, recalibrate

    state_dir = scenario.work / "points" / name
    shutil.rmtree(state_dir, ignore_errors=True)
    settings = line_settings(state_dir, scenario, seed, device)
    started = time.perf_counter()
    queued = queue_verified(state_dir, scenario, picked)
    report = recalibrate(settings, RunOptions(run_id=name, promote=False, train_overrides=overrides))
    run_seconds = time.perf_counter() - started
    candidate = report.run_dir / "candidate"
    point: dict[str, Any] = {"queued": queued, "outcome": report.outcome.name.lower(), "reason": report.reason,
                             "replay_frames": report.data.get("replay_frames"),
                             "train_steps": report.training.get("steps"),
                             "recalibration_seconds": round(run_seconds, 1),
                             "steps_seconds": {s["step"]: s["seconds"] for s in report.steps}}
    if (candidate / "adapter_config.json").is_file():
        evaluated = time.perf_counter()
        point["map50"] = held_out_map50(scenario, candidate, device, batch)
        point["evaluation_seconds"] = round(time.perf_counter() - evaluated, 1)
    shutil.rmtree(state_dir, ignore_errors=True)
    return point
