"""Fitting the per-class score calibration: a known miscalibration fitted on a few hundred boxes is gone on held-out
boxes, the map never reorders boxes, and classes with too few boxes keep their raw scores and say why."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from agent.detector.score_calibration import logit, read_calibration, sigmoid
from calibration.score_calibration import MIN_BOXES, fit_calibration, fit_class, write_calibration
from finetune.metrics import ClassPR
from finetune.reliability import expected_calibration_error


def miscalibrated(n: int, seed: int, slope: float, offset: float) -> tuple[npt.NDArray[np.float64], npt.NDArray]:
    """Raw scores whose true chance of being real is sigmoid(slope * logit(s) + offset)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.02, 0.98, n)
    return scores, rng.uniform(0, 1, n) < sigmoid(slope * logit(scores) + offset)


def as_pr(name: str, scores: npt.ArrayLike, real: npt.ArrayLike) -> ClassPR:
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(real, dtype=bool)
    order = np.argsort(-s, kind="stable")
    return ClassPR(name, s[order], y[order], int(y.sum()))


@pytest.mark.parametrize(("slope", "offset"), [(2.5, -1.5), (0.4, 1.0)])  # over- and underconfident
def test_a_known_miscalibration_fitted_on_few_boxes_is_gone_on_held_out_boxes(slope: float, offset: float) -> None:
    fit_scores, fit_real = miscalibrated(400, seed=1, slope=slope, offset=offset)
    test_scores, test_real = miscalibrated(20000, seed=2, slope=slope, offset=offset)
    calibration = fit_calibration({"scratch": as_pr("scratch", fit_scores, fit_real)})
    scratch = calibration.classes["scratch"]
    assert scratch.fitted and scratch.reason == "Platt scaling on 400 boxes"
    before = expected_calibration_error(test_scores, test_real)
    after = expected_calibration_error(scratch(test_scores), test_real)
    assert before is not None and before > 0.1
    assert after is not None and after <= 0.05
    assert scratch.notes["boxes"] == 400 and scratch.notes["ece_after"] < scratch.notes["ece_before"]


def test_the_map_is_increasing_so_no_two_boxes_change_places() -> None:
    scores, real = miscalibrated(200, seed=3, slope=3.0, offset=-2.0)
    mapped = fit_class(scores, real)(scores)
    order = np.argsort(scores)
    assert np.all(np.diff(mapped[order]) > 0)


def test_too_few_boxes_keep_the_raw_scores_and_say_why() -> None:
    few = fit_class(np.full(12, 0.3), [True] * 6 + [False] * 6)
    assert not few.fitted and few.reason == f"raw scores kept: only 12 predicted box(es) (need {MIN_BOXES})"
    all_real = fit_class(np.linspace(0.1, 0.9, 30), [True] * 28 + [False] * 2)
    assert not all_real.fitted and all_real.reason == "raw scores kept: only 2 false box(es) (need 5)"
    assert all_real(np.array([0.1, 0.9])).tolist() == [0.1, 0.9]
    assert all_real.notes == {"boxes": 30, "real": 28}
    calibration = fit_calibration({"hole": as_pr("hole", np.full(12, 0.3), [True] * 6 + [False] * 6)})
    assert calibration.is_identity


def test_scores_that_do_not_rank_real_boxes_first_become_a_flat_map_at_the_real_fraction() -> None:
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.1, 0.2, 200)
    real = scores < 0.15  # lower scores are the real ones: ranking is backwards
    fitted = fit_class(scores, real)
    assert fitted.fitted and "slope is held at its minimum" in fitted.reason
    mapped = fitted(scores)
    assert np.all(np.diff(mapped[np.argsort(scores)]) > 0)  # still increasing, never reversed
    assert mapped.mean() == pytest.approx(real.mean(), abs=0.03) and np.ptp(mapped) < 0.1


def test_identical_scores_fit_the_real_fraction() -> None:
    fitted = fit_class(np.full(40, 0.5), [True] * 10 + [False] * 30)
    assert fitted.fitted and float(fitted(0.5)) == pytest.approx(11 / 42, abs=0.01)  # Platt's smoothed targets


def test_fitting_limits_below_what_can_be_fitted_are_refused() -> None:
    with pytest.raises(ValueError, match="min_boxes=1, min_each=1: need at least 2 boxes"):
        fit_calibration({}, min_boxes=1, min_each=1)


def test_what_the_fit_writes_is_what_the_daemon_reads(tmp_path: pytest.TempPathFactory) -> None:
    scores, real = miscalibrated(100, seed=5, slope=2.0, offset=0.5)
    calibration = fit_calibration({"scratch": as_pr("scratch", scores, real),
                                   "hole": as_pr("hole", scores[:10], real[:10])})
    path = write_calibration(tmp_path, calibration)  # type: ignore[arg-type]
    assert path.name == "calibration.json"
    assert read_calibration(tmp_path) == calibration  # type: ignore[arg-type]
