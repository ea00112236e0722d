"""Fitting the per-class score calibration that `agent.detector.score_calibration` applies.

Input is the evaluation's PR data (`finetune.metrics.class_pr_data`): per class, every predicted box's raw score and
whether it was real (matched a ground-truth box of its class, one to one, at the IoU). Per class we fit Platt
scaling on the logit, `p = sigmoid(slope * logit(s) + offset)`:

- two parameters, so a few dozen boxes are enough (isotonic regression needs far more and turns scores into steps,
  which ties boxes and changes AP); strictly increasing, so ranking, AP and PR curves stay as they were;
- fitted on standardised logits with Platt's smoothed targets ((n+ + 1)/(n+ + 2), 1/(n- + 2)) and a weak Gaussian
  prior on the standardised slope (`PRIOR`), so a small or separable sample cannot run to infinity;
- the slope stays above `MIN_SLOPE` (standardised): where scores do not rank real boxes above false ones, the map
  becomes nearly flat at the class's real fraction instead of turning decreasing.

A class with fewer than `MIN_BOXES` boxes, or fewer than `MIN_EACH` real or false ones, keeps its raw scores
(identity) and the calibration says why. The order in a recalibration run: fit this on the candidate's raw scores,
then fit the thresholds on the calibrated scores (what the daemon will compare them with).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from agent.detector.score_calibration import CALIBRATION_FILE, ClassCalibration, ScoreCalibration, logit, sigmoid
from finetune.metrics import ClassPR
from finetune.reliability import expected_calibration_error

MIN_BOXES = 20
MIN_EACH = 5
PRIOR = 0.1  # precision of the Gaussian prior on the standardised slope (mean 0): only keeps a tiny sample finite
MIN_SLOPE = 0.05  # on standardised logits


def _loss(u: npt.NDArray[np.float64], t: npt.NDArray[np.float64], alpha: float, beta: float) -> float:
    """Cross-entropy against the smoothed targets plus the slope's prior (log-sigmoid without overflow)."""
    x = alpha * u + beta
    return float(np.sum(t * np.logaddexp(0.0, -x) + (1.0 - t) * np.logaddexp(0.0, x)) + 0.5 * PRIOR * alpha**2)


def _newton(u: npt.NDArray[np.float64], t: npt.NDArray[np.float64], slope: float | None) -> tuple[float, float]:
    """(alpha, beta) minimising `_loss`; with `slope` given, alpha stays there and only beta moves."""
    alpha, beta = (0.0 if slope is None else slope), float(logit(t.mean()))
    for _ in range(100):
        p = sigmoid(alpha * u + beta)
        w = p * (1.0 - p) + 1e-12
        g_beta, h_beta = float(np.sum(p - t)), float(np.sum(w))
        if slope is None:
            grad = np.array([np.sum((p - t) * u) + PRIOR * alpha, g_beta])
            hess = np.array([[np.sum(w * u * u) + PRIOR, np.sum(w * u)], [np.sum(w * u), h_beta]])
            step = np.linalg.solve(hess, grad)
        else:
            step = np.array([0.0, g_beta / h_beta])
        size, before = 1.0, _loss(u, t, alpha, beta)
        while size > 1e-6 and _loss(u, t, alpha - size * step[0], beta - size * step[1]) > before:
            size /= 2  # damped Newton: never a step that makes the fit worse
        alpha, beta = alpha - size * float(step[0]), beta - size * float(step[1])
        if np.max(np.abs(size * step)) < 1e-10:
            break
    return alpha, beta


def fit_platt(scores: npt.ArrayLike, real: npt.ArrayLike) -> tuple[float, float, bool]:
    """(slope, offset, slope_at_minimum) of the map on raw logits."""
    z = logit(scores)
    y = np.asarray(real, dtype=bool).reshape(-1)
    n_real, n_false = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_real + 1) / (n_real + 2), 1.0 / (n_false + 2))
    mean, spread = float(z.mean()), float(z.std())
    spread = spread if spread > 1e-3 else 1.0  # all scores (nearly) equal: nothing to standardise
    u = (z - mean) / spread
    alpha, beta = _newton(u, t, None)
    at_minimum = alpha < MIN_SLOPE
    if at_minimum:
        alpha, beta = _newton(u, t, MIN_SLOPE)
    return alpha / spread, beta - alpha * mean / spread, at_minimum


def fit_class(scores: npt.ArrayLike, real: npt.ArrayLike, min_boxes: int = MIN_BOXES,
              min_each: int = MIN_EACH) -> ClassCalibration:
    """One class's map, or the identity with the reason when there are too few boxes to fit it."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(real, dtype=bool).reshape(-1)
    n_real, n_false = int(y.sum()), int((~y).sum())
    notes: dict[str, Any] = {"boxes": len(s), "real": n_real}
    short = [f"only {n} {what} box(es) (need {need})" for n, what, need in
             ((len(s), "predicted", min_boxes), (n_real, "real", min_each), (n_false, "false", min_each)) if n < need]
    if short:
        return ClassCalibration(False, reason=f"raw scores kept: {'; '.join(short)}", notes=notes)
    slope, offset, at_minimum = fit_platt(s, y)
    fitted = ClassCalibration(True, slope, offset)
    reason = ("scores hardly rank real boxes above false ones: the slope is held at its minimum, so scores sit "
              "near the class's real fraction" if at_minimum else f"Platt scaling on {len(s)} boxes")
    notes.update(ece_before=_rounded(expected_calibration_error(s, y)),
                 ece_after=_rounded(expected_calibration_error(fitted(s), y)))
    return ClassCalibration(True, slope, offset, reason, notes)


def fit_calibration(pr: Mapping[str, ClassPR], min_boxes: int = MIN_BOXES, min_each: int = MIN_EACH
                    ) -> ScoreCalibration:
    """Every class of `pr` (raw scores and real/false flags); ECE figures in the notes are on the fitting data."""
    if min_boxes < 2 or min_each < 1:
        raise ValueError(f"min_boxes={min_boxes}, min_each={min_each}: need at least 2 boxes and 1 of each kind")
    return ScoreCalibration({name: fit_class(data.scores, data.tp, min_boxes, min_each) for name, data in pr.items()})


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
