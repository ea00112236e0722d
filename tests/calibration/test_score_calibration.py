"""Fitting the per-class score calibration: a known miscalibration fitted on a few hundred boxes is gone on held-out
boxes, the map never reorders boxes, a class short of false (or real) boxes is shrunk toward all classes' boxes
pooled, and only where even the pool is short do classes keep their raw scores; every class says which rule fitted
it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from agent.detector.score_calibration import logit, read_calibration, sigmoid
from calibration.platt import fit_platt
from calibration.score_calibration import MIN_BOXES, MIN_EACH, Pool, fit_calibration, fit_class, write_calibration
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
    assert scratch.fitted and scratch.reason == "Platt scaling on 400 boxes" and scratch.notes["rule"] == "per-class"
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


def test_without_a_pool_too_few_boxes_keep_the_raw_scores_and_say_why() -> None:
    few = fit_class(np.full(12, 0.3), [True] * 6 + [False] * 6)
    assert not few.fitted and few.reason == f"raw scores kept: only 12 predicted box(es) (need {MIN_BOXES})"
    all_real = fit_class(np.linspace(0.1, 0.9, 30), [True] * 28 + [False] * 2)
    assert not all_real.fitted and all_real.reason == "raw scores kept: only 2 false box(es) (need 5)"
    assert all_real(np.array([0.1, 0.9])).tolist() == [0.1, 0.9]
    assert all_real.notes == {"boxes": 30, "real": 28, "rule": "raw"}
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


# ----- a class short of false (or real) boxes: shrunk toward all classes' boxes pooled --------------------------------
def demo_like(n: int, seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray]:
    """Raw scores ~0.3-0.7 for boxes that are ~95 % real (the shipped demo model's case): one true map per class."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.3, 0.7, n)
    return scores, rng.uniform(0, 1, n) < sigmoid(3.0 * logit(scores) + 3.5)


def short_of_false(n_real: int, n_false: int, seed: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """`n_real` real boxes scored 0.3-0.7 and `n_false` false ones scored lower (0.25-0.45)."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.uniform(0.3, 0.7, n_real), rng.uniform(0.25, 0.45, n_false)])
    return scores, np.arange(n_real + n_false) < n_real


@pytest.mark.parametrize("n_false", range(MIN_EACH))
def test_a_class_with_0_to_4_false_boxes_gets_an_increasing_map_through_the_pooled_rule(n_false: int) -> None:
    pool_scores, pool_real = demo_like(400, seed=10)
    hole_scores, hole_real = short_of_false(100, n_false, seed=11)
    calibration = fit_calibration({"scratch": as_pr("scratch", pool_scores, pool_real),
                                   "hole": as_pr("hole", hole_scores, hole_real)})
    hole = calibration.classes["hole"]
    assert hole.fitted and hole.slope > 0 and hole.notes["rule"] == "shrunk-to-pooled"
    assert hole.reason.startswith(f"only {n_false} false box(es) (need 5): Platt scaling on its {100 + n_false} boxes "
                                  "and all classes' ")
    assert "pooled as a prior (counted as" in hole.reason and hole.notes["prior_boxes"] > 0
    grid = np.linspace(0.01, 0.99, 99)
    assert np.all(np.diff(hole(grid)) > 0)  # increasing: ranking, AP and PR curves are unchanged
    assert np.array_equal(np.argsort(hole(hole_scores), kind="stable"), np.argsort(hole_scores, kind="stable"))
    assert calibration.classes["scratch"].notes["rule"] == "per-class"  # enough of both: its own fit, as before


def test_shrinking_sets_a_short_class_level_between_the_pools_real_fraction_and_its_own() -> None:
    pool_scores, pool_real = demo_like(400, seed=12)
    hole_scores, hole_real = short_of_false(120, 0, seed=13)  # every hole box real
    calibration = fit_calibration({"scratch": as_pr("scratch", pool_scores, pool_real),
                                   "hole": as_pr("hole", hole_scores, hole_real)})
    mean_hole = float(calibration.classes["hole"](hole_scores).mean())
    pooled_fraction = (pool_real.sum() + 120) / (400 + 120)
    assert pooled_fraction < mean_hole < 121 / 122  # its own boxes pull it up, the pool keeps it off Platt's 121/122


def test_held_out_ece_of_classes_short_of_false_boxes_reaches_the_goal_after_the_pooled_fit() -> None:
    """Three classes with one true map, ~95 % real: on 60 boxes hole and stain have fewer than 5 false ones."""
    fit = {name: demo_like(n, seed) for name, n, seed in (("scratch", 300, 20), ("hole", 60, 21), ("stain", 60, 22))}
    assert all(int((~real).sum()) < MIN_EACH for _, real in (fit["hole"], fit["stain"]))  # the case under test
    calibration = fit_calibration({name: as_pr(name, *data) for name, data in fit.items()})
    assert [calibration.classes[name].notes["rule"] for name in ("hole", "stain")] == ["shrunk-to-pooled"] * 2
    for name, seed in (("hole", 31), ("stain", 32)):
        scores, real = demo_like(20000, seed)
        before = expected_calibration_error(scores, real)
        after = expected_calibration_error(calibration.classes[name](scores), real)
        assert before is not None and before > 0.3
        assert after is not None and after <= 0.05


def test_a_class_without_boxes_of_its_own_gets_the_pools_map() -> None:
    pool_scores, pool_real = demo_like(300, seed=14)
    calibration = fit_calibration({"scratch": as_pr("scratch", pool_scores, pool_real), "hole": as_pr("hole", [], [])})
    hole = calibration.classes["hole"]
    assert hole.fitted and hole.notes["rule"] == "shrunk-to-pooled"
    assert hole.reason.startswith("no boxes of its own: Platt scaling on all classes' 300 boxes pooled")
    pooled = fit_platt(pool_scores, pool_real)
    grid = np.linspace(0.3, 0.7, 9)  # where the pool has boxes (its weak slope prior weighs a little more here)
    assert hole(grid) == pytest.approx(sigmoid(pooled.slope * logit(grid) + pooled.offset), abs=0.01)


def test_where_even_the_pool_is_short_every_short_class_keeps_raw_scores_and_says_why() -> None:
    scores, real = short_of_false(60, 2, seed=15)
    calibration = fit_calibration({"hole": as_pr("hole", scores, real), "stain": as_pr("stain", scores, real)})
    assert calibration.is_identity
    hole = calibration.classes["hole"]
    assert hole.notes["rule"] == "raw"
    assert hole.reason == "raw scores kept: only 2 false box(es) (need 5); all classes pooled: only 4 false box(es) " \
                          "(need 5)"


def test_the_pool_counts_as_many_boxes_as_hold_min_each_of_its_rarer_kind() -> None:
    scores, real = short_of_false(90, 10, seed=16)  # 10 false boxes in 100: 5 of them are held by 50 boxes
    pool = Pool.of({"hole": as_pr("hole", scores, real)})
    assert pool.boxes == 100 and pool.real == 90 and pool.prior_boxes == pytest.approx(50.0) and not pool.short
    assert Pool.of({"hole": as_pr("hole", scores[:92], real[:92])}).short == ("only 2 false box(es) (need 5)",)
