"""Platt scaling on the score's logit, `p = sigmoid(slope * logit(s) + offset)`, fitted by weighted cross-entropy.

- Targets are Platt's smoothed ones (`smoothed_targets`): (n+ + 1)/(n+ + 2) for real boxes, 1/(n- + 2) for false
  ones, so a separable sample, or one with no box of a kind, cannot run to infinity.
- Every box has a weight: 1 for a class's own boxes; a shrunk fit (`calibration/score_calibration.py`) adds all classes'
  boxes at a lower weight as its prior.
- Fitted on standardised logits (the weighted mean and spread) with a weak Gaussian prior on the standardised slope
  (`PRIOR`), by damped Newton steps; the slope stays above `MIN_SLOPE` (standardised), so the map is strictly
  increasing and never reorders boxes: where scores do not rank real boxes above false ones it becomes nearly flat
  at the real fraction instead of turning decreasing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.detector.score_calibration import logit, sigmoid

PRIOR = 0.1  # precision of the Gaussian prior on the standardised slope (mean 0): only keeps a tiny sample finite
MIN_SLOPE = 0.05  # on standardised logits

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PlattFit:
    """The map on raw logits, and whether its slope was held at `MIN_SLOPE` (scores hardly rank real boxes first)."""

    slope: float
    offset: float
    slope_at_minimum: bool


def smoothed_targets(real: npt.ArrayLike) -> Array:
    """Platt's targets: (n+ + 1)/(n+ + 2) for each real box, 1/(n- + 2) for each false one."""
    y = np.asarray(real, dtype=bool).reshape(-1)
    n_real, n_false = int(y.sum()), int((~y).sum())
    return np.where(y, (n_real + 1) / (n_real + 2), 1.0 / (n_false + 2))


def _loss(u: Array, t: Array, w: Array, alpha: float, beta: float) -> float:
    """Weighted cross-entropy against the targets plus the slope's prior (log-sigmoid without overflow)."""
    x = alpha * u + beta
    return float(np.sum(w * (t * np.logaddexp(0.0, -x) + (1.0 - t) * np.logaddexp(0.0, x))) + 0.5 * PRIOR * alpha**2)


def _newton_step(u: Array, t: Array, w: Array, alpha: float, beta: float, slope: float | None) -> Array:
    """The Newton step on (alpha, beta); with `slope` given, alpha stays and only beta moves."""
    p = sigmoid(alpha * u + beta)
    h = w * p * (1.0 - p) + 1e-12
    g = w * (p - t)
    if slope is not None:
        return np.array([0.0, np.sum(g) / np.sum(h)])
    grad = np.array([np.sum(g * u) + PRIOR * alpha, np.sum(g)])
    hess = np.array([[np.sum(h * u * u) + PRIOR, np.sum(h * u)], [np.sum(h * u), np.sum(h)]])
    return np.asarray(np.linalg.solve(hess, grad))


def _newton(u: Array, t: Array, w: Array, slope: float | None) -> tuple[float, float]:
    """(alpha, beta) minimising `_loss`; with `slope` given, alpha stays there and only beta moves."""
    mean_target = float(np.sum(w * t) / np.sum(w))
    alpha, beta = (0.0 if slope is None else slope), float(logit(mean_target))
    for _ in range(100):
        step = _newton_step(u, t, w, alpha, beta, slope)
        size, before = 1.0, _loss(u, t, w, alpha, beta)
        while size > 1e-6 and _loss(u, t, w, alpha - size * step[0], beta - size * step[1]) > before:
            size /= 2  # damped Newton: never a step that makes the fit worse
        alpha, beta = alpha - size * float(step[0]), beta - size * float(step[1])
        if np.max(np.abs(size * step)) < 1e-10:
            break
    return alpha, beta


def fit_logits(z: npt.ArrayLike, targets: npt.ArrayLike, weights: npt.ArrayLike | None = None) -> PlattFit:
    """The map on raw logits `z` minimising the weighted cross-entropy against `targets` (each in (0, 1))."""
    z, t = np.asarray(z, dtype=np.float64).reshape(-1), np.asarray(targets, dtype=np.float64).reshape(-1)
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if not len(z) == len(t) == len(w) or len(z) == 0 or np.any(w < 0) or np.sum(w) <= 0:
        raise ValueError(f"need as many targets ({len(t)}) and weights ({len(w)}) >= 0 as logits ({len(z)}), not none")
    mean = float(np.sum(w * z) / np.sum(w))
    spread = float(np.sqrt(np.sum(w * (z - mean) ** 2) / np.sum(w)))
    spread = spread if spread > 1e-3 else 1.0  # all scores (nearly) equal: nothing to standardise
    u = (z - mean) / spread
    alpha, beta = _newton(u, t, w, None)
    at_minimum = alpha < MIN_SLOPE
    if at_minimum:
        alpha, beta = _newton(u, t, w, MIN_SLOPE)
    return PlattFit(alpha / spread, beta - alpha * mean / spread, at_minimum)


def fit_platt(scores: npt.ArrayLike, real: npt.ArrayLike) -> PlattFit:
    """One sample's map: every box weighs 1, against Platt's smoothed targets."""
    return fit_logits(logit(scores), smoothed_targets(real))
