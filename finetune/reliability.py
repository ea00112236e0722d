"""How far box scores are from being probabilities: expected calibration error (ECE) and reliability bins.

A predicted box is *real* when it matched a ground-truth box of its class at the evaluation IoU, one to one
(`finetune.metrics.class_pr_data`, the matcher behind the PR curves). A calibrated score of 0.8 means ~80 % of the
boxes scored about 0.8 are real. The boxes are put into `ECE_BINS` equal-width score bins ([0, 0.1), ..., [0.9, 1]):
fixed edges, so two models or two runs are compared on the same bins and the reliability diagram reads directly.
ECE is the box-weighted mean of |mean score - fraction real| over the bins; 0 is perfect.

Small samples inflate ECE: even perfectly calibrated scores show |mean - fraction| of about sqrt(p(1-p)/n) per
bin, so `expected_noise_ece` says what a perfectly calibrated model would show on the same scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

ECE_BINS = 10
OVERALL = "overall"  # the key of every class's boxes pooled


class ScoredBoxes(Protocol):
    """One class's predictions: score and whether each was real (`finetune.metrics.ClassPR` is one)."""

    @property
    def scores(self) -> npt.NDArray[np.float64]: ...

    @property
    def tp(self) -> npt.NDArray[np.bool_]: ...


@dataclass(frozen=True)
class Reliability:
    """Boxes per equal-width score bin: count, mean score and fraction real (NaN in empty bins), and the ECE."""

    edges: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]
    mean_score: npt.NDArray[np.float64]
    fraction_real: npt.NDArray[np.float64]

    @property
    def boxes(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float | None:
        """Box-weighted mean |mean score - fraction real|; None without boxes."""
        if self.boxes == 0:
            return None
        used = self.count > 0
        gaps = np.abs(self.mean_score[used] - self.fraction_real[used])
        return float(np.sum(gaps * self.count[used]) / self.boxes)

    def to_json(self) -> dict[str, Any]:
        def listed(values: npt.NDArray[np.float64]) -> list[float | None]:
            return [None if np.isnan(v) else round(float(v), 4) for v in values]

        return {"ece": None if self.ece is None else round(self.ece, 4), "boxes": self.boxes,
                "edges": listed(self.edges), "count": self.count.tolist(),
                "mean_score": listed(self.mean_score), "fraction_real": listed(self.fraction_real)}


def bin_index(scores: npt.ArrayLike, bins: int = ECE_BINS) -> npt.NDArray[np.int64]:
    """Equal-width bin of each score in [0, 1] (a score of exactly 1 goes to the last bin)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size and (np.isnan(s).any() or s.min() < 0.0 or s.max() > 1.0):
        raise ValueError(f"scores must lie in [0, 1]; got min {np.nanmin(s):g}, max {np.nanmax(s):g}")
    return np.minimum((s * bins).astype(np.int64), bins - 1)


def reliability(scores: npt.ArrayLike, real: npt.ArrayLike, bins: int = ECE_BINS) -> Reliability:
    """The reliability bins of boxes with these scores and real/false flags."""
    if bins < 1:
        raise ValueError(f"bins={bins}: need at least 1")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(real, dtype=np.float64).reshape(-1)
    if len(s) != len(y):
        raise ValueError(f"{len(s)} scores but {len(y)} real/false flags")
    index = bin_index(s, bins)
    count = np.bincount(index, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: NaN, skipped by `ece`
        mean_score = np.bincount(index, weights=s, minlength=bins) / count
        fraction_real = np.bincount(index, weights=y, minlength=bins) / count
    return Reliability(np.linspace(0.0, 1.0, bins + 1), count, mean_score, fraction_real)


def expected_calibration_error(scores: npt.ArrayLike, real: npt.ArrayLike, bins: int = ECE_BINS) -> float | None:
    return reliability(scores, real, bins).ece


def class_reliability(pr: Mapping[str, ScoredBoxes], bins: int = ECE_BINS) -> dict[str, Reliability]:
    """Per class (every prediction and its TP flag) and `OVERALL` (all classes' boxes pooled)."""
    result = {name: reliability(data.scores, data.tp, bins) for name, data in pr.items()}
    scores = np.concatenate([data.scores for data in pr.values()]) if pr else np.zeros(0)
    real = np.concatenate([data.tp for data in pr.values()]) if pr else np.zeros(0, dtype=bool)
    return {OVERALL: reliability(scores, real, bins), **result}


def calibration_json(curves: Mapping[str, Reliability], bins: int = ECE_BINS) -> dict[str, Any]:
    """What metrics.json says about score calibration: binning, overall and per-class ECE and bins."""
    overall = curves[OVERALL]
    return {"binning": f"{bins} equal-width score bins", "ece": overall.to_json()["ece"], "boxes": overall.boxes,
            "per_class_ece": {name: r.to_json()["ece"] for name, r in curves.items() if name != OVERALL},
            "bins": {name: r.to_json() for name, r in curves.items()}}


def expected_noise_ece(scores: npt.ArrayLike, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float | None:
    """The mean ECE perfectly calibrated scores would show on this many boxes (each box real with probability
    its score): the floor below which a measured ECE says nothing."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        return None
    rng = np.random.default_rng(seed)
    values = [reliability(s, rng.random(s.size) < s, bins).ece for _ in range(draws)]
    return float(np.mean([v for v in values if v is not None]))
