"""A stand-in for `edge-inspect recalibrate` that the station's tests start as a process: it writes progress.json and
report.json exactly as agent/runs.py says a run does, with a PEFT-shaped candidate adapter and a few PNG plots, in a
second or two and without any model. SIGTERM ends it "cancelled" like the real run.

    python fake_run.py RUNS_DIR RUN_ID [pass|reject|crash|hang|too_small] [STEPS] [STEP_S]

On "pass" it stores the candidate in {RUNS_DIR}/../models without promoting it, like the real run started by the station
(`--no-promote`, outcome "passed"; the store needs a base).
The report helpers are imported by the API tests too, to lay out a finished run without a process.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

from agent.runs import REPORT_FILE, RunProgress, write_progress
from agent.store.model_store import ModelStore

CLASSES = ("scratch", "hole", "stain")
BEFORE: dict[str, Any] = {"map": 0.412, "map50": 0.633, "per_class": {"scratch": 0.52, "hole": 0.31, "stain": 0.406}}
AFTER: dict[str, Any] = {"map": 0.468, "map50": 0.702, "per_class": {"scratch": 0.58, "hole": 0.36, "stain": 0.464}}
WORSE: dict[str, Any] = {"map": 0.377, "map50": 0.590, "per_class": {"scratch": 0.52, "hole": 0.19, "stain": 0.42}}


def write_adapter(directory: Path, value: float = 1.0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({"lora_A": np.full((8, 4), value, dtype=np.float32)}, str(directory / "adapter_model.safetensors"))
    return directory


def write_plot(path: Path, kind: str, better: bool) -> str:
    """A PR-curve or confusion-matrix PNG like finetune/plots.py draws (made-up numbers), so the report page shows
    real-looking pictures; returns its path relative to the run folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4.2), dpi=80)
    if kind == "pr_curves":
        recall = np.linspace(0, 1, 50)
        for index, name in enumerate(CLASSES):
            ax.step(recall, np.clip(1 - recall ** (3.5 - index + (1.5 if better else 0)), 0, 1), label=name)
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall per class (IoU 0.5)", ylim=(0, 1.05))
        ax.legend(loc="lower left", fontsize=8)
    else:
        matrix = np.array([[6, 0, 1, 1], [0, 3, 0, 1], [1, 0, 4, 0], [0, 1, 0, 0]]) + (np.eye(4, dtype=int) if better
                                                                                        else 0)
        ax.imshow(matrix, cmap="Blues")
        for (row, col), value in np.ndenumerate(matrix):
            ax.text(col, row, str(value), ha="center", va="center", fontsize=9)
        labels = [*CLASSES, "background"]
        ax.set_xticks(range(4), labels, rotation=45, ha="right")
        ax.set_yticks(range(4), labels)
        ax.set_title("Confusion matrix")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return str(path.relative_to(path.parents[1]))


def gate_of(passed: bool) -> dict[str, Any]:
    """The gate section as calibration/gate.py writes it."""
    after = AFTER if passed else WORSE
    per_class = {name: {"current": BEFORE["per_class"][name], "candidate": after["per_class"][name],
                        "delta": after["per_class"][name] - BEFORE["per_class"][name]} for name in CLASSES}
    delta = after["map50"] - BEFORE["map50"]
    interval = {"delta": delta, "low": delta - 0.048, "high": delta + 0.045, "confidence": 0.95, "resamples": 200,
                "seed": 0}
    failures = [] if passed else ["class 'hole' loses 0.120 AP (0.310 -> 0.190; margin 0.05)",
                                  f"golden mAP50 does not improve ({delta:+.3f}): the candidate is no better than the "
                                  "current model"]
    reasons = failures or [f"golden mAP50 {delta:+.3f} (>= 0.01; 95% interval [{interval['low']:+.3f}, "
                           f"{interval['high']:+.3f}] above 0) and no class down by more than 0.05 AP"]
    return {"passed": passed, "rule": "improvement" if passed else "class_margin", "reasons": reasons,
            "failures": failures, "interval": interval, "margin": 0.05, "min_map50_delta": 0.01,
            "per_class": per_class, "map": {"current": BEFORE["map"], "candidate": after["map"]},
            "map50": {"current": BEFORE["map50"], "candidate": after["map50"], "delta": delta}}


def write_frame(path: Path, index: int) -> str:
    """A golden frame (a synthetic board with defects), as the run copies them into its folder."""
    from agent.capture.synthetic import SyntheticGenerator

    path.parent.mkdir(parents=True, exist_ok=True)
    image = SyntheticGenerator(seed=index, size=160, max_defects=2, defect_free_fraction=0.0).frame(index).image
    Image.fromarray(np.ascontiguousarray(image[:, :, ::-1])).save(path)  # BGR frames, RGB file
    return str(path.relative_to(path.parents[1]))


def verdicts_of(run_dir: Path, passed: bool) -> dict[str, Any]:
    """Frames whose verdict changes between the two models, as calibration/verdicts.py lists them."""
    rows = [{"entry_id": 3, "image": write_frame(run_dir / "golden" / "003.png", 0), "truth": "fail",
             "current": "pass", "candidate": "fail", "change": "fixed"},
            {"entry_id": 7, "image": write_frame(run_dir / "golden" / "007.png", 1), "truth": "fail",
             "current": "uncertain", "candidate": "fail" if passed else "pass",
             "change": "fixed" if passed else "broken"}]
    return {"frames": 12, "changed": 2, "fixed": 2 if passed else 1, "broken": 0 if passed else 1,
            "frames_changed": rows}


def write_report(run_dir: Path, passed: bool, candidate: str | None = None) -> dict[str, Any]:
    """A finished run's report.json (and its candidate adapter, plots and frames) in `run_dir`, shaped as
    calibration/report.py writes it."""
    write_adapter(run_dir / "candidate", 1.0 if passed else 2.0)
    files = {f"{name}_{kind}": write_plot(run_dir / name / f"{kind}.png", kind, name == "candidate" and passed)
             for name in ("current", "candidate") for kind in ("pr_curves", "confusion_matrix")}
    golden = {"frames": 12, "queue_frames": 12, "external": None, "external_frames": 0,
              "boxes": {"scratch": 7, "hole": 4, "stain": 5}, "min_per_class": 3}
    reason = (f"the gate passed; stored as {candidate}, not promoted: the technician decides" if candidate else
              "candidate rejected (rule class_margin), the current model keeps serving: class 'hole' loses 0.120 AP")
    report = {"run_id": run_dir.name, "outcome": "passed" if passed else "rejected", "reason": reason,
              "current": None, "candidate": candidate,
              "data": {"training_frames": 36, "labelled_frames": 36, "replay_frames": 0, "golden": golden},
              "training": {"steps": 6, "final_loss": 0.3412, "stopped": None},
              "evaluation": {"backend": "torch-eager", "images": 12, "current": {**BEFORE, "images": 12},
                             "candidate": {**(AFTER if passed else WORSE), "images": 12}},
              "gate": gate_of(passed), "files": files, "verdicts": verdicts_of(run_dir, passed),
              "thresholds": {"metric": "precision", "target": 0.9,
                             "classes": {name: {"threshold": 0.42} for name in CLASSES}}}
    (run_dir / REPORT_FILE).write_text(json.dumps(report))
    return report


def write_too_small_report(run_dir: Path) -> dict[str, Any]:
    """A run that stopped at its snapshot: the golden set cannot judge a model (calibration/run.py, `_snapshot`)."""
    golden = {"frames": 2, "queue_frames": 2, "external": None, "external_frames": 0,
              "boxes": {"scratch": 2, "hole": 0, "stain": 1}, "min_per_class": 3}
    report = {"run_id": run_dir.name, "outcome": "golden_too_small",
              "reason": "golden set too small: at least 3 box(es) per class needed, short: scratch 2, hole 0, stain 1 "
                        "(2 verified golden queue frame(s)); review more frames of those classes and mark some golden "
                        "in the station, or lower recalibration.min_golden_per_class",
              "current": None, "candidate": None,
              "data": {"training_frames": 9, "labelled_frames": 9, "golden": golden},
              "training": {}, "evaluation": {}, "gate": {}}  # as calibration/report.py writes a run that stopped early
    (run_dir / REPORT_FILE).write_text(json.dumps(report))
    return report


def promote(run_dir: Path) -> str:
    """What the real run started by the station does when the gate passes: store the candidate, not current yet
    (`--no-promote`: the station's Promote makes it current and reloads the daemon)."""
    store = ModelStore.in_state_dir(run_dir.parents[1])
    return store.add_adapter(run_dir / "candidate", metrics=AFTER, extra={"recalibration_run": run_dir.name})


def main(runs_dir: Path, run_id: str, scenario: str = "pass", steps: int = 5, step_s: float = 0.2) -> int:
    run_dir = runs_dir / run_id
    progress = RunProgress(run_id, stage="snapshot")
    stop = {"asked": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(asked=True))
    write_progress(run_dir, progress)
    for step in range(1, steps + 1):
        if stop["asked"] or (scenario == "hang" and step == steps):
            while scenario == "hang" and not stop["asked"]:
                time.sleep(0.05)
            progress.state, progress.message = "cancelled", "cancelled by SIGTERM"
            write_progress(run_dir, progress)
            return 1
        time.sleep(step_s)
        progress.stage, progress.step, progress.total_steps = "train", step, steps
        progress.loss, progress.eta_s = 2.0 / step, (steps - step) * step_s
        write_progress(run_dir, progress)
    if scenario == "crash":
        print("Traceback: something broke in evaluate", flush=True)
        return 1
    if scenario == "too_small":
        write_too_small_report(run_dir)
        progress.stage, progress.state = "report", "finished"
        write_progress(run_dir, progress)
        return 0
    progress.stage = "evaluate"
    write_progress(run_dir, progress)
    passed = scenario == "pass"
    write_adapter(run_dir / "candidate", 1.0 if passed else 2.0)
    write_report(run_dir, passed, promote(run_dir) if passed else None)
    progress.stage, progress.state = "report", "finished"
    write_progress(run_dir, progress)
    return 0


if __name__ == "__main__":
    given = sys.argv[1:6]
    args = given + ["pass", "5", "0.2"][len(given) - 2:]  # defaults for what is not given
    sys.exit(main(Path(args[0]), args[1], args[2], int(args[3]), float(args[4])))
