"""Platt scaling by weighted cross-entropy: smoothed targets, a box of weight 2 counts as two boxes, and bad inputs
are refused."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detector.score_calibration import logit, sigmoid
from calibration.platt import fit_logits, fit_platt, smoothed_targets


def test_targets_are_platts_smoothed_fractions() -> None:
    targets = smoothed_targets([True, True, True, False])
    assert targets.tolist() == pytest.approx([4 / 5, 4 / 5, 4 / 5, 1 / 3])
    assert smoothed_targets([True] * 8).tolist() == pytest.approx([9 / 10] * 8)  # no false box: still below 1


def test_a_box_of_weight_two_counts_as_that_box_twice() -> None:
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 1.5, 60)
    t = np.where(rng.uniform(0, 1, 60) < sigmoid(1.2 * z + 0.4), 0.9, 0.1)
    weights = np.where(np.arange(60) < 20, 2.0, 1.0)
    weighted = fit_logits(z, t, weights)
    repeated = fit_logits(np.concatenate([z, z[:20]]), np.concatenate([t, t[:20]]))
    assert weighted.slope == pytest.approx(repeated.slope, rel=1e-6)
    assert weighted.offset == pytest.approx(repeated.offset, rel=1e-6)


def test_a_known_map_is_recovered_from_many_boxes() -> None:
    rng = np.random.default_rng(8)
    scores = rng.uniform(0.05, 0.95, 20000)
    real = rng.uniform(0, 1, scores.size) < sigmoid(2.0 * logit(scores) - 1.0)
    fit = fit_platt(scores, real)
    assert fit.slope == pytest.approx(2.0, abs=0.1) and fit.offset == pytest.approx(-1.0, abs=0.1)
    assert not fit.slope_at_minimum


@pytest.mark.parametrize(("z", "t", "w"), [([0.0, 1.0], [0.5], None), ([0.0, 1.0], [0.5, 0.5], [1.0, -1.0]),
                                            ([], [], None), ([0.0], [0.5], [0.0])])
def test_mismatched_negative_or_empty_inputs_are_refused(z: list[float], t: list[float], w: list[float] | None
                                                         ) -> None:
    with pytest.raises(ValueError, match="need as many targets"):
        fit_logits(z, t, w)
