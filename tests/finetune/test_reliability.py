"""Expected calibration error of box scores: equal-width bins, box-weighted gaps, per class and pooled."""

from __future__ import annotations

import numpy as np
import pytest

from finetune.metrics import ClassPR
from finetune.reliability import (
    OVERALL,
    calibration_json,
    class_reliability,
    expected_calibration_error,
    expected_noise_ece,
    reliability,
)


def test_ece_is_the_box_weighted_gap_between_mean_score_and_fraction_real_per_bin() -> None:
    curve = reliability([0.05, 0.15, 0.15, 0.95], [False, True, False, True])
    assert curve.count.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert curve.mean_score[1] == pytest.approx(0.15) and curve.fraction_real[1] == pytest.approx(0.5)
    assert np.isnan(curve.mean_score[2])  # an empty bin has no mean and counts for nothing
    assert curve.ece == pytest.approx((1 * 0.05 + 2 * 0.35 + 1 * 0.05) / 4)


def test_a_score_of_one_falls_in_the_last_bin_and_scores_outside_0_1_are_refused() -> None:
    assert reliability([1.0, 0.0], [True, False]).count.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert reliability([1.0, 0.0], [True, False]).ece == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"scores must lie in \[0, 1\]; got min -0.1, max 0.5"):
        reliability([-0.1, 0.5], [True, False])
    with pytest.raises(ValueError, match="3 scores but 2 real/false flags"):
        reliability([0.1, 0.2, 0.3], [True, False])


def test_no_boxes_have_no_ece() -> None:
    assert expected_calibration_error([], []) is None
    assert expected_noise_ece([]) is None


def test_scores_that_are_probabilities_score_near_zero_and_near_the_noise_floor() -> None:
    rng = np.random.default_rng(5)
    scores = rng.uniform(0, 1, 4000)
    real = rng.uniform(0, 1, 4000) < scores
    measured = expected_calibration_error(scores, real)
    floor = expected_noise_ece(scores)
    assert measured is not None and floor is not None
    assert measured < 0.03 and floor < 0.03
    overconfident = expected_calibration_error(scores, rng.uniform(0, 1, 4000) < scores / 2)
    assert overconfident is not None and overconfident > 0.2


def test_per_class_and_overall_pool_the_same_boxes_and_the_json_says_how_it_binned() -> None:
    pr = {"scratch": ClassPR("scratch", np.array([0.95, 0.85]), np.array([True, True]), 2),
          "hole": ClassPR("hole", np.array([0.95]), np.array([False]), 1),
          "stain": ClassPR("stain", np.zeros(0), np.zeros(0, dtype=bool), 0)}
    curves = class_reliability(pr)
    assert list(curves) == [OVERALL, "scratch", "hole", "stain"]
    assert curves[OVERALL].boxes == 3 and curves["scratch"].ece == pytest.approx(0.1)
    assert curves["hole"].ece == pytest.approx(0.95) and curves["stain"].ece is None
    data = calibration_json(curves)
    assert data["binning"] == "10 equal-width score bins" and data["boxes"] == 3
    assert data["per_class_ece"] == {"scratch": 0.1, "hole": 0.95, "stain": None}
    # pooled, the two 0.95 boxes share a bin (half real: gap 0.45 each) and the 0.85 one has its own (gap 0.15)
    assert data["ece"] == pytest.approx((2 * 0.45 + 0.15) / 3, abs=1e-4)
