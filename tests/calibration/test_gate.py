"""The promotion gate: no class may lose more than the margin, the mean AP may not drop, the line's verdicts on the
golden frames may not get worse, and golden mAP50 must rise by more than its noise and at least the configured
minimum; the rule that decided is named."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from agent.detections import Detections
from calibration.gate import GateRules, Judged, compare, judge, scores_of
from finetune.metrics import score_predictions

CLASSES = ("scratch", "hole", "stain")
RULES = GateRules(ap_margin=0.05, min_map50_delta=0.01, resamples=100, seed=0)


def test_the_gate_names_the_class_that_lost_ap() -> None:
    current = {"map": 0.5, "map50": 0.6, "per_class": {"scratch": 0.6, "hole": 0.4, "stain": None}}
    candidate = {"map": 0.52, "map50": 0.6, "per_class": {"scratch": 0.5, "hole": 0.54, "stain": 0.3}}
    gate = compare(current, candidate, margin=0.05)
    assert not gate["passed"] and gate["failures"] == ["class 'scratch' loses 0.100 AP (0.600 -> 0.500; margin 0.05)"]
    assert compare(current, candidate, margin=0.15)["passed"]
    assert "mean AP drops" in compare(candidate, current, margin=1.0)["failures"][0]


def test_scores_of_takes_what_the_gate_compares_from_an_evaluation_report() -> None:
    report = SimpleNamespace(map=0.4, map50=0.7, per_class={"hole": 0.4}, pr={}, model="m")
    assert scores_of(report) == {"map": 0.4, "map50": 0.7, "per_class": {"hole": 0.4}}


def golden(frames: int = 10) -> list[Detections]:
    return [Detections.from_labels(["hole"], [[10, 10, 30, 30]], CLASSES, (64, 64)) for _ in range(frames)]


def finding(truth: list[Detections], found: int) -> Judged:
    """A model that finds the defect on the first `found` golden frames and nothing elsewhere."""
    predictions = [t if i < found else t[np.zeros(1, dtype=bool)] for i, t in enumerate(truth)]
    return Judged(scores_of(score_predictions(truth, predictions, CLASSES)), predictions)


def test_a_model_that_changes_nothing_is_rejected_for_no_improvement() -> None:
    truth = golden()
    same = finding(truth, 6)
    gate = judge(truth, CLASSES, same, same, RULES)
    assert not gate["passed"] and gate["rule"] == "no_improvement"
    assert gate["interval"] == {"delta": 0.0, "low": 0.0, "high": 0.0, "confidence": 0.95, "resamples": 100,
                                "seed": 0}
    assert [r.split(" ")[0] for r in gate["reasons"]] == ["golden", "the", "the"]  # no improvement, noise, minimum


def test_a_clear_improvement_passes_with_its_interval_above_zero() -> None:
    truth = golden()
    gate = judge(truth, CLASSES, finding(truth, 3), finding(truth, 10), RULES)
    assert gate["passed"] and gate["rule"] == "improvement" and gate["failures"] == []
    interval = gate["interval"]
    assert 0 < interval["low"] <= interval["delta"] <= interval["high"]
    assert gate["map50"]["delta"] == gate["map50"]["candidate"] - gate["map50"]["current"]
    assert gate["reasons"][0].startswith(f"golden mAP50 {interval['delta']:+.3f}")


def test_an_improvement_within_the_noise_is_rejected() -> None:
    truth = golden()
    gate = judge(truth, CLASSES, finding(truth, 8), finding(truth, 9), RULES)  # one more frame of ten
    assert gate["map50"]["delta"] > 0 and gate["interval"]["low"] <= 0
    assert not gate["passed"] and gate["rule"] == "noise" and "within its noise" in gate["reasons"][0]


def test_an_improvement_below_the_minimum_is_rejected() -> None:
    truth = golden()
    rules = GateRules(ap_margin=0.05, min_map50_delta=0.9, resamples=100)
    gate = judge(truth, CLASSES, finding(truth, 3), finding(truth, 10), rules)
    assert not gate["passed"] and gate["rule"] == "min_delta" and "below the minimum 0.9" in gate["reasons"][0]


def test_a_class_regression_decides_before_the_improvement_rules() -> None:
    truth = golden()
    gate = judge(truth, CLASSES, finding(truth, 10), finding(truth, 3), RULES)
    assert gate["rule"] == "class_margin" and "class 'hole' loses" in gate["reasons"][0]


def changes(*rows: tuple[str, str, str, str]) -> dict[str, object]:
    """verdict_changes' shape over ten golden frames: a (truth, current, candidate, change) per changed frame."""
    frames = [{"entry_id": i, "image": f"{i}.png", "truth": t, "current": a, "candidate": b, "change": c}
              for i, (t, a, b, c) in enumerate(rows)]
    return {"frames": 10, "changed": len(frames), "fixed": sum(r["change"] == "fixed" for r in frames),
            "broken": sum(r["change"] == "broken" for r in frames), "frames_changed": frames}


PASSED_DEFECT = ("fail", "fail", "pass", "broken")
FAILED_GOOD_PART = ("pass", "pass", "fail", "broken")
CAUGHT_DEFECT = ("fail", "pass", "fail", "fixed")
NOW_UNSURE = ("fail", "fail", "uncertain", "broken")


def test_a_better_map_that_passes_more_defects_than_it_catches_is_rejected() -> None:
    # the demo run this rule comes from: golden mAP50 +0.012 while 4 failing golden frames would have passed
    truth = golden()
    verdicts = changes(PASSED_DEFECT, PASSED_DEFECT, FAILED_GOOD_PART, CAUGHT_DEFECT)
    gate = judge(truth, CLASSES, finding(truth, 3), finding(truth, 10), RULES, verdicts)
    assert not gate["passed"] and gate["rule"] == "verdicts"
    assert gate["reasons"] == ["3 of 10 golden frames would get the opposite of the right verdict (the current "
                               "model's), and only 1 the right one instead of the opposite: the line would pass "
                               "defects or fail good parts it handles now"]


def test_a_frame_that_becomes_uncertain_goes_to_a_person_and_does_not_count() -> None:
    truth = golden()
    verdicts = changes(NOW_UNSURE, NOW_UNSURE, NOW_UNSURE, CAUGHT_DEFECT)
    gate = judge(truth, CLASSES, finding(truth, 3), finding(truth, 10), RULES, verdicts)
    assert gate["passed"] and gate["rule"] == "improvement"


def test_as_many_verdicts_fixed_as_broken_leaves_the_decision_to_the_map_rules() -> None:
    truth = golden()
    verdicts = changes(PASSED_DEFECT, CAUGHT_DEFECT)
    assert judge(truth, CLASSES, finding(truth, 3), finding(truth, 10), RULES, verdicts)["rule"] == "improvement"


def test_a_class_regression_decides_before_the_verdicts() -> None:
    truth = golden()
    gate = judge(truth, CLASSES, finding(truth, 10), finding(truth, 3), RULES, changes(PASSED_DEFECT))
    assert gate["rule"] == "class_margin" and any(r.startswith("1 of 10 golden frames") for r in gate["reasons"])
