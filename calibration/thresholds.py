"""Per-class score thresholds fitted to a target precision (or recall) from evaluation PR data.

Input is `finetune.metrics.class_pr_data(...)`: per class, every prediction's score (best first) and whether it
matched a ground-truth box. Keeping the predictions with `score >= t` gives one (precision, recall) point per
distinct score; the fit picks, among the cuts meeting the target,

- target precision: the lowest threshold (most recall) whose precision is at least the target;
- target recall: the highest threshold (fewest false alarms) whose recall is at least the target.

A class the data cannot fit (no ground truth, no predictions, or no cut reaching the target) keeps its fallback
threshold, and the fit says why, so the report can show it instead of inventing a number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from finetune.metrics import ClassPR

Metric = Literal["precision", "recall"]


class ThresholdError(ValueError):
    """A fitting request that makes no sense; the message names the bad value."""


@dataclass(frozen=True)
class ThresholdFit:
    """The threshold chosen for one class and what it achieves on the fitting data."""

    name: str
    threshold: float
    fitted: bool  # False: the fallback was kept (see `reason`)
    precision: float | None
    recall: float | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def distinct_cuts(pr: ClassPR) -> np.ndarray:
    """Indices i where keeping predictions 0..i is a real cut (the next score is strictly lower)."""
    scores = pr.scores
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    last_of_run = np.append(scores[1:] < scores[:-1], True)
    return np.flatnonzero(last_of_run)


def fit_class(pr: ClassPR, target: float, metric: Metric, fallback: float,
              bounds: tuple[float, float] = (0.0, 1.0)) -> ThresholdFit:
    """The threshold for one class reaching `target` in `metric`, clamped to `bounds`; else the fallback."""
    if pr.n_gt == 0:
        return ThresholdFit(pr.name, fallback, False, None, None, "no ground-truth boxes of this class")
    cuts = distinct_cuts(pr)
    if len(cuts) == 0:
        return ThresholdFit(pr.name, fallback, False, None, 0.0, "the model predicted no box of this class")
    precision, recall, scores = pr.curve()
    values = precision[cuts] if metric == "precision" else recall[cuts]
    meeting = cuts[values >= target - 1e-12]
    if len(meeting) == 0:
        best = float(values.max())
        return ThresholdFit(pr.name, fallback, False, None, None,
                            f"no threshold reaches {metric} {target:g} (best {best:.3f})")
    # precision: the lowest passing cut keeps the most boxes; recall: the first passing cut keeps the fewest
    chosen = int(meeting.max() if metric == "precision" else meeting.min())
    threshold = float(np.clip(scores[chosen], *bounds))
    return ThresholdFit(pr.name, threshold, True, float(precision[chosen]), float(recall[chosen]),
                        f"{metric} >= {target:g}")


def fit_thresholds(pr: Mapping[str, ClassPR], target: float, metric: Metric = "precision",
                   fallback: Mapping[str, float] | float = 0.5,
                   bounds: tuple[float, float] = (0.0, 1.0)) -> dict[str, ThresholdFit]:
    """Fit every class; `fallback` (one value or per class) is kept where the data cannot reach the target."""
    if metric not in ("precision", "recall"):
        raise ThresholdError(f"metric {metric!r}: must be 'precision' or 'recall'")
    if not 0.0 < target <= 1.0:
        raise ThresholdError(f"target {metric} {target}: must lie in (0, 1]")
    low, high = bounds
    if not 0.0 <= low <= high <= 1.0:
        raise ThresholdError(f"threshold bounds {bounds}: need 0 <= low <= high <= 1")

    def fallback_for(name: str) -> float:
        return float(fallback) if isinstance(fallback, (int, float)) else float(fallback.get(name, 0.5))

    return {name: fit_class(data, target, metric, fallback_for(name), bounds) for name, data in pr.items()}


def thresholds_of(fits: Mapping[str, ThresholdFit]) -> dict[str, float]:
    """The plain `{class: threshold}` mapping a manifest and the daemon's decide step use."""
    return {name: round(fit.threshold, 6) for name, fit in fits.items()}
