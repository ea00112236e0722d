"""The promotion gate: a candidate adapter replaces the current one only for a real improvement on the golden set.

Rules, checked in this order; the first that fails decides (`rule`), and every failure is listed (`reasons`):

1. `class_margin`: no class loses more than `ap_margin` AP@[.5:.95];
2. `mean_ap`: mean AP@[.5:.95] does not drop;
3. `verdicts`: the candidate, with its own fitted thresholds, does not turn more golden verdicts the current model
   had right into the opposite (a defect passed, a good part failed) than the other way round
   (`calibration.verdicts`; a change to or from `uncertain` does not count: that frame goes to a person either way):
   a better mAP with thresholds that let real defects pass would still cost the line;
4. `no_improvement`: golden mAP50 goes up at all (an adapter that changes nothing is never promoted);
5. `noise`: the lower bound of the bootstrap interval of the mAP50 change is above 0 (`calibration.bootstrap`);
6. `min_delta`: the mAP50 change is at least `min_map50_delta`.

A candidate that passes them all is promoted by rule `improvement`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.detections import Detections
from calibration.bootstrap import Interval, map50_delta_interval


@dataclass(frozen=True)
class GateRules:
    ap_margin: float
    min_map50_delta: float
    resamples: int = 200
    seed: int = 0


@dataclass(frozen=True)
class Judged:
    """One model's golden-set result: its scores (`scores_of`) and its predictions, one per golden frame."""

    scores: dict[str, Any]
    predictions: Sequence[Detections]


def scores_of(evaluation: Any) -> dict[str, Any]:
    """The golden-set scores the gate compares, from an evaluation report (`finetune.evaluate.evaluate`)."""
    return {"map": evaluation.map, "map50": evaluation.map50, "per_class": evaluation.per_class}


def compare(current: dict[str, Any], candidate: dict[str, Any], margin: float) -> dict[str, Any]:
    """Rules 1 and 2: every class within `margin` AP of the current model and the mean AP not lower."""
    per_class: dict[str, dict[str, float | None]] = {}
    failures: list[str] = []
    for name, new in candidate["per_class"].items():
        old = current["per_class"].get(name)
        delta = None if old is None or new is None else new - old
        per_class[name] = {"current": old, "candidate": new, "delta": delta}
        if delta is not None and delta < -margin:
            failures.append(f"class {name!r} loses {-delta:.3f} AP ({old:.3f} -> {new:.3f}; margin {margin:g})")
    if candidate["map"] < current["map"] - 1e-9:
        failures.append(f"mean AP drops from {current['map']:.3f} to {candidate['map']:.3f}")
    return {"passed": not failures, "failures": failures, "margin": margin, "per_class": per_class,
            "map": {"current": current["map"], "candidate": candidate["map"]},
            "map50": {"current": current["map50"], "candidate": candidate["map50"]}}


def judge(ground_truth: Sequence[Detections], class_names: Sequence[str], current: Judged, candidate: Judged,
          rules: GateRules, verdicts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every rule on the two models' golden results (and their verdict changes, `verdict_changes`, when given); the
    gate dict the report carries."""
    gate = compare(current.scores, candidate.scores, rules.ap_margin)
    interval = map50_delta_interval(ground_truth, current.predictions, candidate.predictions, class_names,
                                    rules.resamples, rules.seed)
    failed = (_regression_rules(gate["failures"]) + _verdict_rule(verdicts)
              + _improvement_rules(interval, rules.min_map50_delta))
    passed = not failed
    reasons = [text for _, text in failed] or [_promotion_reason(interval, rules)]
    gate.update(passed=passed, rule=failed[0][0] if failed else "improvement", reasons=reasons,
                failures=[text for _, text in failed], interval=interval.to_json(),
                min_map50_delta=rules.min_map50_delta)
    gate["map50"]["delta"] = interval.delta
    return gate


def _regression_rules(failures: list[str]) -> list[tuple[str, str]]:
    return [("mean_ap" if text.startswith("mean AP") else "class_margin", text) for text in failures]


def _verdict_rule(verdicts: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not verdicts:
        return []
    flipped = [r for r in verdicts["frames_changed"] if "uncertain" not in (r["current"], r["candidate"])]
    broken = sum(r["change"] == "broken" for r in flipped)
    fixed = sum(r["change"] == "fixed" for r in flipped)
    if broken <= fixed:
        return []
    return [("verdicts", f"{broken} of {verdicts['frames']} golden frames would get the opposite of the right verdict "
                         f"(the current model's), and only {fixed} the right one instead of the opposite: the line "
                         "would pass defects or fail good parts it handles now")]


def _improvement_rules(interval: Interval, min_delta: float) -> list[tuple[str, str]]:
    failed: list[tuple[str, str]] = []
    spread = (f"{interval.confidence:.0%} interval [{interval.low:+.3f}, {interval.high:+.3f}] over "
              f"{interval.resamples} resamples")
    if interval.delta <= 0:
        failed.append(("no_improvement", f"golden mAP50 does not improve ({interval.delta:+.3f}): the candidate is "
                                         "no better than the current model"))
    if interval.low <= 0:
        failed.append(("noise", f"the mAP50 change {interval.delta:+.3f} is within its noise: {spread} reaches 0"))
    if interval.delta < min_delta:
        failed.append(("min_delta", f"the mAP50 change {interval.delta:+.3f} is below the minimum {min_delta:g} "
                                    "(recalibration.min_map50_delta)"))
    return failed


def _promotion_reason(interval: Interval, rules: GateRules) -> str:
    return (f"golden mAP50 {interval.delta:+.3f} (>= {rules.min_map50_delta:g}; {interval.confidence:.0%} interval "
            f"[{interval.low:+.3f}, {interval.high:+.3f}] above 0) and no class down by more than "
            f"{rules.ap_margin:g} AP")
