"""Fitting the per-class score calibration that `agent.detector.score_calibration` applies.

Input is the evaluation's PR data (`finetune.metrics.class_pr_data`): per class, every predicted box's raw score and
whether it was real (matched a ground-truth box of its class, one to one, at the IoU). Each class gets Platt scaling
on the logit, `p = sigmoid(slope * logit(s) + offset)` (`calibration/platt.py`): two parameters, so a few dozen boxes
are enough (isotonic regression needs far more and turns scores into steps, which ties boxes and changes AP);
strictly increasing, so ranking, AP and PR curves stay as they were. Which fit a class gets (its `rule` note, and its
reason, say which):

- `per-class`: at least `MIN_BOXES` boxes, `MIN_EACH` of them real and `MIN_EACH` false: Platt scaling on its own boxes.
- `shrunk-to-pooled`: a class short of any of those (a good model makes few false boxes) is fitted on its own boxes
  plus every class's boxes pooled as a prior (one detector and one score formula, so the classes' maps are alike).
  The pool is weighted to count as `prior_boxes`: as many boxes as hold `MIN_EACH` of its rarer kind, the evidence a
  class needs for a fit of its own. Where the class has many boxes of one kind, they set its level (a class whose
  boxes are nearly all real scores near its own real fraction); the pool sets the slope it cannot tell by itself.
  A class without a box of its own gets the pool's map: the best guess of its boxes' chance to be real, which is
  what its threshold (kept from the current model, fitted on calibrated scores too) is compared with.
- `raw`: even the pool is short (fewer than `MIN_BOXES` boxes or `MIN_EACH` real or false ones over all classes): the
  class keeps its raw scores (identity) and the reason names what is missing.

The order in a recalibration run: fit this on the candidate's raw scores, then fit the thresholds on the calibrated
scores (what the daemon will compare them with, as its uncertain band and the learning queue's band do).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from agent.detector.score_calibration import CALIBRATION_FILE, ClassCalibration, ScoreCalibration, logit
from calibration.platt import PlattFit, fit_logits, fit_platt, smoothed_targets
from finetune.metrics import ClassPR
from finetune.reliability import expected_calibration_error

MIN_BOXES = 20
MIN_EACH = 5


def shortages(boxes: int, real: int, min_boxes: int, min_each: int) -> list[str]:
    """What a sample lacks for a fit: fewer than `min_boxes` boxes, or fewer than `min_each` real or false ones."""
    counts = ((boxes, "predicted", min_boxes), (real, "real", min_each), (boxes - real, "false", min_each))
    return [f"only {n} {what} box(es) (need {need})" for n, what, need in counts if n < need]


@dataclass(frozen=True)
class Pool:
    """Every class's boxes together (logits and Platt's smoothed targets of the pooled counts): the prior a class
    short of boxes is shrunk toward, weighted to count as `prior_boxes` boxes; `short` says why it cannot be one."""

    logits: npt.NDArray[np.float64]
    targets: npt.NDArray[np.float64]
    real: int
    prior_boxes: float
    short: tuple[str, ...]

    @classmethod
    def of(cls, pr: Mapping[str, ClassPR], min_boxes: int = MIN_BOXES, min_each: int = MIN_EACH) -> Pool:
        scores = np.concatenate([np.asarray(d.scores, dtype=np.float64) for d in pr.values()] or [np.zeros(0)])
        real = np.concatenate([np.asarray(d.tp, dtype=bool) for d in pr.values()] or [np.zeros(0, dtype=bool)])
        n_real, n_rare = int(real.sum()), int(min(real.sum(), (~real).sum()))
        # as strong as the evidence a class needs for a fit of its own: `min_each` boxes of the pool's rarer kind
        prior = min_each * len(real) / n_rare if n_rare else 0.0
        return cls(logit(scores), smoothed_targets(real), n_real, prior,
                   tuple(shortages(len(real), n_real, min_boxes, min_each)))

    @property
    def boxes(self) -> int:
        return len(self.logits)

    def shrunk_fit(self, scores: npt.ArrayLike, real: npt.ArrayLike) -> PlattFit:
        """Platt scaling on a class's own boxes (weight 1 each) plus the pool's (weight `prior_boxes` in all)."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        weights = np.concatenate([np.ones(len(s)), np.full(self.boxes, self.prior_boxes / self.boxes)])
        return fit_logits(np.concatenate([logit(s), self.logits]),
                          np.concatenate([smoothed_targets(real), self.targets]), weights)


def fit_class(scores: npt.ArrayLike, real: npt.ArrayLike, min_boxes: int = MIN_BOXES,
              min_each: int = MIN_EACH, pool: Pool | None = None) -> ClassCalibration:
    """One class's map by the first rule its data (and the pool's) allows: per-class, shrunk toward the pool, or the
    identity with the reason (see the module's docstring)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(real, dtype=bool).reshape(-1)
    notes: dict[str, Any] = {"boxes": len(s), "real": int(y.sum())}
    short = "; ".join(shortages(len(s), int(y.sum()), min_boxes, min_each))
    if not short:
        fit, rule, reason = fit_platt(s, y), "per-class", f"Platt scaling on {len(s)} boxes"
    elif pool is not None and not pool.short:
        fit, rule, reason = pool.shrunk_fit(s, y), "shrunk-to-pooled", _shrunk_reason(short, len(s), pool)
        notes["prior_boxes"] = round(pool.prior_boxes, 1)
    else:
        pooled = f"; all classes pooled: {'; '.join(pool.short)}" if pool is not None else ""
        return ClassCalibration(False, reason=f"raw scores kept: {short}{pooled}", notes={**notes, "rule": "raw"})
    if fit.slope_at_minimum:
        reason += ("; scores hardly rank real boxes above false ones: the slope is held at its minimum, so scores sit "
                   "near the real fraction")
    return _fitted(s, y, fit, reason, {**notes, "rule": rule})


def _shrunk_reason(short: str, boxes: int, pool: Pool) -> str:
    prior = f"all classes' {pool.boxes} boxes pooled as a prior (counted as {pool.prior_boxes:.0f})"
    if boxes == 0:  # the pool's map: the best guess for a class the fitting data never showed
        return f"no boxes of its own: Platt scaling on {prior}"
    return f"{short}: Platt scaling on its {boxes} boxes and {prior}"


def _fitted(scores: npt.NDArray[np.float64], real: npt.NDArray[np.bool_], fit: PlattFit, reason: str,
            notes: dict[str, Any]) -> ClassCalibration:
    """The map with its reason and notes, including its ECE before and after on the boxes it was fitted on."""
    mapped = ClassCalibration(True, fit.slope, fit.offset)
    notes.update(ece_before=_rounded(expected_calibration_error(scores, real)),
                 ece_after=_rounded(expected_calibration_error(mapped(scores), real)))
    return ClassCalibration(True, fit.slope, fit.offset, reason, notes)


def fit_calibration(pr: Mapping[str, ClassPR], min_boxes: int = MIN_BOXES, min_each: int = MIN_EACH
                    ) -> ScoreCalibration:
    """Every class of `pr` (raw scores and real/false flags); ECE figures in the notes are on the fitting data."""
    if min_boxes < 2 or min_each < 1:
        raise ValueError(f"min_boxes={min_boxes}, min_each={min_each}: need at least 2 boxes and 1 of each kind")
    pool = Pool.of(pr, min_boxes, min_each)
    return ScoreCalibration({name: fit_class(data.scores, data.tp, min_boxes, min_each, pool)
                             for name, data in pr.items()})


def calibrate_predictions(predictions: Sequence[Detections], calibration: ScoreCalibration) -> list[Detections]:
    """Every frame's boxes with calibrated scores (what the daemon will publish)."""
    return [calibration.apply(d) for d in predictions]


def write_calibration(model_dir: str | Path, calibration: ScoreCalibration) -> Path:
    """`calibration.json` in a model directory (next to thresholds.json); returns its path."""
    path = Path(model_dir) / CALIBRATION_FILE
    path.write_text(json.dumps(calibration.to_json(), indent=2) + "\n")
    return path


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
