"""Per-class threshold fitting to a target precision or recall from evaluation PR data."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.thresholds import ThresholdError, fit_class, fit_thresholds, thresholds_of
from finetune.metrics import ClassPR


def pr(scores: list[float], tp: list[bool], n_gt: int, name: str = "scratch") -> ClassPR:
    return ClassPR(name, np.asarray(scores, dtype=np.float64), np.asarray(tp, dtype=bool), n_gt)


# scores best first: precision after each cut 1, 1, 2/3, 3/4, 3/5; recall out of 4 boxes
CURVE = pr([0.9, 0.8, 0.7, 0.6, 0.5], [True, True, False, True, False], n_gt=4)


def test_target_precision_picks_the_lowest_threshold_that_reaches_it() -> None:
    fit = fit_class(CURVE, 0.75, "precision", fallback=0.5)
    assert fit.fitted and fit.threshold == 0.6
    assert fit.precision == pytest.approx(0.75) and fit.recall == pytest.approx(0.75)
    assert fit_class(CURVE, 1.0, "precision", 0.5).threshold == 0.8


def test_target_recall_picks_the_highest_threshold_that_reaches_it() -> None:
    fit = fit_class(CURVE, 0.5, "recall", fallback=0.5)
    assert fit.fitted and fit.threshold == 0.8 and fit.recall == pytest.approx(0.5)


def test_a_cut_never_splits_predictions_with_equal_scores() -> None:
    tied = pr([0.9, 0.7, 0.7], [True, True, False], n_gt=2)
    fit = fit_class(tied, 0.9, "precision", fallback=0.5)
    assert fit.threshold == 0.9  # 0.7 would keep both tied boxes: precision 2/3


def test_unreachable_targets_and_classes_without_data_keep_their_fallback_and_say_why() -> None:
    assert fit_class(pr([0.9], [False], 1), 0.5, "precision", 0.4).reason.startswith("no threshold reaches")
    none = fit_class(pr([], [], 3), 0.9, "precision", 0.4)
    assert not none.fitted and none.threshold == 0.4 and "no box" in none.reason
    unseen = fit_class(pr([0.8], [False], 0), 0.9, "precision", 0.45)
    assert unseen.threshold == 0.45 and "no ground-truth" in unseen.reason


def test_every_class_is_fitted_with_its_own_fallback() -> None:
    fits = fit_thresholds({"scratch": CURVE, "hole": pr([], [], 0, "hole")}, 0.75,
                          fallback={"scratch": 0.5, "hole": 0.35})
    assert thresholds_of(fits) == {"scratch": 0.6, "hole": 0.35}


@pytest.mark.parametrize(("kwargs", "message"), [({"target": 0.0}, "target precision 0.0"),
                                                 ({"target": 0.9, "metric": "f1"}, "metric 'f1'"),
                                                 ({"target": 0.9, "bounds": (0.8, 0.2)}, "bounds")])
def test_bad_requests_name_the_value(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ThresholdError, match=message):
        fit_thresholds({"scratch": CURVE}, **kwargs)
