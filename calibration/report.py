"""What a recalibration run did: its outcome (the exit code), and `report.json` + `report.md` in its run folder.

`report.json` (read by the station's report page through `agent.runs.read_report`; paths are relative to the run
folder)::

    run_id, outcome ("promoted"|"failed"|"rejected"|"nothing_to_learn"|"golden_too_small"|"cancelled"), exit_code,
    reason, current (store version served before, or null), candidate (store version, once stored),
    data        {training_frames, labelled_frames, replay_frames, snapshot,
                 golden: {frames, queue_frames, external, external_frames, boxes: {class: n}, min_per_class}}
    training    {steps, final_loss, stopped, parent, run_dir}
    evaluation  {backend, precision (onnx lines), images,
                 current|candidate: {map, map50, per_class, per_class_ap50, model, images,
                                     files: {pr_curves, confusion_matrix}}}
    thresholds  {metric, target, classes: {class: {threshold, precision, recall, reason, ...}},
                 score_calibration (agent.detector.score_calibration's JSON), golden_ece: {raw, calibrated}}
    gate        {passed, rule, reasons, failures, interval: {delta, low, high, confidence, resamples, seed},
                 margin, min_map50_delta, map, map50, per_class: {class: {current, candidate, delta}}}
    verdicts    {frames, changed, fixed, broken,
                 frames_changed: [{entry_id, image, truth, current, candidate, change}]}
    steps       [{step, state, seconds, ...}]
    files       {json, markdown, training_plot, current_pr_curves, current_confusion_matrix, candidate_..., ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from agent.runs import RunState


class Outcome(IntEnum):
    """The run's result; the value is the process exit code (2 is taken by a bad config)."""

    PROMOTED = 0
    FAILED = 1
    REJECTED = 3  # the candidate did not pass the gate
    NOTHING_TO_LEARN = 4  # too few verified training frames in the queue
    GOLDEN_TOO_SMALL = 5  # the golden set has too few boxes of some class to judge a model
    CANCELLED = 6  # SIGTERM (e.g. the station's cancel button): stopped cleanly, nothing promoted
    PASSED = 7  # the gate passed and the candidate is stored, but not promoted (--no-promote: a person decides)


def run_state(outcome: Outcome) -> RunState:
    """How progress.json ends: a refused or rejected run still finished; only errors and cancels did not."""
    if outcome is Outcome.FAILED:
        return "failed"
    return "cancelled" if outcome is Outcome.CANCELLED else "finished"


class RunError(RuntimeError):
    """A step that could not complete (the run ends FAILED); the message names the step's input at fault."""


class Cancelled(RuntimeError):
    """The run was asked to stop (SIGTERM or `Recalibration.cancel`); raised at the next safe point."""


@dataclass
class Report:
    """What the run did; written as report.json and report.md in the run folder."""

    run_id: str
    run_dir: Path
    outcome: Outcome = Outcome.FAILED
    reason: str = ""
    current: str | None = None
    candidate: str | None = None  # store version of the candidate, once stored
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    verdicts: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "outcome": self.outcome.name.lower(), "exit_code": int(self.outcome),
                "reason": self.reason, "current": self.current, "candidate": self.candidate, "data": self.data,
                "training": self.training, "evaluation": self.evaluation, "gate": self.gate,
                "thresholds": self.thresholds, "verdicts": self.verdicts, "steps": self.steps, "files": self.files}


def write_report(report: Report) -> None:
    """report.json and report.md (tables + links to the plots) in the run folder."""
    report.files.update({"json": "report.json", "markdown": "report.md"})
    (report.run_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    (report.run_dir / "report.md").write_text(report_markdown(report))


def report_markdown(report: Report) -> str:
    lines = (_summary_lines(report) + _gate_lines(report) + _threshold_lines(report) + _verdict_lines(report))
    plots = [(k, v) for k, v in report.files.items() if v.endswith(".png")]
    lines += ["## Plots", ""] + [f"![{k}]({v})" for k, v in plots] if plots else []
    return "\n".join(lines) + "\n"


def _summary_lines(report: Report) -> list[str]:
    stopped = f" (stopped early: {report.training['stopped']})" if report.training.get("stopped") else ""
    return [f"# Recalibration run {report.run_id}", "", f"**Outcome: {report.outcome.name.lower()}** — "
            f"{report.reason}", "", f"- current model: {report.current or 'base model alone'}",
            f"- candidate version: {report.candidate or '(not stored)'}",
            f"- data: {report.data.get('labelled_frames', 0)} labelled queue frames, "
            f"{report.data.get('replay_frames', 0)} replay frames", *_golden_lines(report),
            f"- training: {report.training.get('steps', 0)} steps, final loss "
            f"{report.training.get('final_loss', float('nan')):.4f}" + stopped, ""]


def _golden_lines(report: Report) -> list[str]:
    golden = report.data.get("golden")
    if not golden:
        return []
    external = f" + {golden['external_frames']} from {golden['external']}" if golden.get("external") else ""
    boxes = ", ".join(f"{name} {count}" for name, count in golden["boxes"].items())
    backend = report.evaluation.get("backend")
    judged = f", judged on the {backend} backend" if backend else ""
    return [f"- golden set: {golden['queue_frames']} verified queue frames{external} ({boxes} boxes){judged}"]


def _gate_lines(report: Report) -> list[str]:
    if not report.gate:
        return []
    lines = ["## Golden set (AP@[.5:.95])", "", "| class | current | candidate | change |", "| --- | --- | --- | --- |"]
    for name, row in report.gate["per_class"].items():
        lines.append(f"| {name} | {_num(row['current'])} | {_num(row['candidate'])} | {_num(row['delta'], True)} |")
    for label, key in (("**mean**", "map"), ("**mAP50**", "map50")):
        scores = report.gate[key]
        lines.append(f"| {label} | {_num(scores['current'])} | {_num(scores['candidate'])} | "
                     f"{_num(scores['candidate'] - scores['current'], True)} |")
    lines.append("")
    interval = report.gate.get("interval")
    if interval:
        lines.append(f"- mAP50 change {_num(interval['delta'], True)}, {interval['confidence']:.0%} bootstrap interval "
                     f"[{_num(interval['low'], True)}, {_num(interval['high'], True)}] over "
                     f"{interval['resamples']} resamples of the golden frames")
    if "rule" in report.gate:
        lines.append(f"- decided by rule `{report.gate['rule']}`")
    lines += [f"- gate failure: {f}" for f in report.gate["failures"]] or ["- gate passed"]
    return [*lines, ""]


def _threshold_lines(report: Report) -> list[str]:
    if not report.thresholds:
        return []
    lines = [f"## Thresholds ({report.thresholds['metric']} >= {report.thresholds['target']})", "",
             "| class | threshold | precision | recall | note |", "| --- | --- | --- | --- | --- |"]
    for name, fit in report.thresholds["classes"].items():
        lines.append(f"| {name} | {fit['threshold']:.3f} | {_num(fit['precision'])} | {_num(fit['recall'])} | "
                     f"{fit['reason']} |")
    return [*lines, "", *_score_calibration_lines(report.thresholds)]


def _score_calibration_lines(thresholds: dict[str, Any]) -> list[str]:
    """Which classes publish calibrated scores (the thresholds above are on them), and the golden set's ECE."""
    calibration = thresholds.get("score_calibration")
    if not calibration:
        return []
    ece = thresholds.get("golden_ece") or {}
    lines = [f"Score calibration, fitted on the golden set (ECE raw {_num(ece.get('raw'))}, calibrated "
             f"{_num(ece.get('calibrated'))}):", ""]
    lines += [f"- {name}: {'calibrated' if c['fitted'] else 'raw'} ({c['reason']})"
              for name, c in calibration["classes"].items()]
    return [*lines, ""]


def _verdict_lines(report: Report) -> list[str]:
    if not report.verdicts:
        return []
    v = report.verdicts
    lines = [f"## Verdicts that change ({v['changed']} of {v['frames']} golden frames: {v['fixed']} fixed, "
             f"{v['broken']} broken)", ""]
    if v["frames_changed"]:
        lines += ["| frame | truth | current | candidate |", "| --- | --- | --- | --- |"]
        lines += [f"| {row['image']} | {row['truth']} | {row['current']} | {row['candidate']} |"
                  for row in v["frames_changed"]]
    return [*lines, ""]


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
