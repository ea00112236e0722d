"""The run report: report.json carries the outcome as exit code, report.md the tables a technician reads."""

from __future__ import annotations

import json
from pathlib import Path

from calibration.gate import compare
from calibration.report import Outcome, Report, report_markdown, run_state, write_report


def test_report_json_and_markdown_show_the_gate_and_thresholds(tmp_path: Path) -> None:
    report = Report("20250131T120000Z", tmp_path, Outcome.REJECTED, reason="candidate rejected")
    report.training = {"steps": 12, "final_loss": 0.25, "stopped": "time budget"}
    report.gate = compare({"map": 0.5, "map50": 0.6, "per_class": {"hole": 0.5}},
                          {"map": 0.4, "map50": 0.5, "per_class": {"hole": 0.4}}, margin=0.05)
    report.thresholds = {"metric": "precision", "target": 0.9, "classes": {
        "hole": {"threshold": 0.42, "precision": 0.93, "recall": None, "reason": "fitted"}}}
    report.files["candidate_pr_curves"] = "candidate/pr_curves.png"
    write_report(report)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert (saved["outcome"], saved["exit_code"], saved["files"]["markdown"]) == ("rejected", 3, "report.md")
    markdown = (tmp_path / "report.md").read_text()
    assert "**Outcome: rejected** — candidate rejected" in markdown and "(stopped early: time budget)" in markdown
    assert "| hole | 0.500 | 0.400 | -0.100 |" in markdown and "- gate failure: class 'hole' loses" in markdown
    assert "| hole | 0.420 | 0.930 | – | fitted |" in markdown
    assert markdown.endswith("![candidate_pr_curves](candidate/pr_curves.png)\n")


def test_a_run_that_stopped_early_has_no_tables(tmp_path: Path) -> None:
    markdown = report_markdown(Report("r1", tmp_path, reason="no golden set"))
    assert "**Outcome: failed** — no golden set" in markdown and "- candidate version: (not stored)" in markdown
    assert "## Golden set" not in markdown and "## Plots" not in markdown


def test_the_report_shows_the_golden_set_the_interval_the_rule_and_changed_verdicts(tmp_path: Path) -> None:
    report = Report("r2", tmp_path, Outcome.PROMOTED, reason="promoted v0002")
    report.data = {"labelled_frames": 5, "replay_frames": 0, "golden": {
        "frames": 3, "queue_frames": 2, "external": "/data/golden", "external_frames": 1,
        "boxes": {"hole": 4, "stain": 3}, "min_per_class": 3}}
    report.evaluation = {"backend": "onnx"}
    report.gate = {**compare({"map": 0.4, "map50": 0.5, "per_class": {"hole": 0.4}},
                             {"map": 0.5, "map50": 0.7, "per_class": {"hole": 0.5}}, margin=0.05),
                   "rule": "improvement", "interval": {"delta": 0.2, "low": 0.05, "high": 0.3, "confidence": 0.95,
                                                       "resamples": 200, "seed": 0}}
    report.verdicts = {"frames": 3, "changed": 1, "fixed": 1, "broken": 0, "frames_changed": [
        {"entry_id": 7, "image": "golden/images/000000007.png", "truth": "fail", "current": "pass",
         "candidate": "fail", "change": "fixed"}]}
    markdown = report_markdown(report)
    assert "- golden set: 2 verified queue frames + 1 from /data/golden (hole 4, stain 3 boxes), judged on the onnx " \
           "backend" in markdown
    assert "| **mAP50** | 0.500 | 0.700 | +0.200 |" in markdown
    assert "- mAP50 change +0.200, 95% bootstrap interval [+0.050, +0.300] over 200 resamples" in markdown
    assert "- decided by rule `improvement`" in markdown
    assert "## Verdicts that change (1 of 3 golden frames: 1 fixed, 0 broken)" in markdown
    assert "| golden/images/000000007.png | fail | pass | fail |" in markdown


def test_outcomes_are_exit_codes_and_end_states() -> None:
    assert [int(o) for o in Outcome] == [0, 1, 3, 4, 5, 6, 7]
    assert [run_state(o) for o in Outcome] == ["finished", "failed", "finished", "finished", "finished", "cancelled",
                                               "finished"]
