"""DeepPCB's protocol as bench/deeppcb.py scores it: a hit needs IoU above 0.33 (not equal), thresholds maximise F1,
and the F-score pools every class's boxes."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detections import Detections
from bench.deeppcb import best_f1_thresholds, deeppcb_protocol, operating_point
from finetune.metrics import ClassPR

CLASSES = ("open", "short")


def boxes(labels: list[str], xyxy: list[list[float]], scores: list[float] | None = None) -> Detections:
    found = Detections.from_labels(labels, xyxy, CLASSES, (100, 100))
    if scores is not None:
        found = Detections(found.xyxy, found.class_id, np.asarray(scores, dtype=np.float32), CLASSES, (100, 100))
    return found


def test_best_f1_threshold_keeps_the_cut_with_the_highest_f1() -> None:
    # 4 ground-truth boxes; predictions best first: hit, hit, miss, hit, miss -> F1 peaks after the 4th (6/8 = 0.75)
    pr = {"open": ClassPR("open", np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([1, 1, 0, 1, 0], dtype=bool), 4),
          "short": ClassPR("short", np.zeros(0), np.zeros(0, dtype=bool), 0)}
    assert best_f1_thresholds(pr) == {"open": pytest.approx(0.6), "short": 0.5}


def test_a_cut_never_splits_predictions_of_equal_score() -> None:
    pr = {"open": ClassPR("open", np.array([0.9, 0.7, 0.7]), np.array([1, 0, 1], dtype=bool), 3),
          "short": ClassPR("short", np.array([0.4]), np.array([1], dtype=bool), 1)}
    cut = best_f1_thresholds(pr)["open"]
    assert cut in (pytest.approx(0.9), pytest.approx(0.7))
    assert operating_point(pr, {"open": cut, "short": 0.4})["tp"] in (2, 3)  # both 0.7 boxes in or both out


def test_the_f_score_pools_the_boxes_of_every_class() -> None:
    pr = {"open": ClassPR("open", np.array([0.9, 0.8]), np.array([1, 0], dtype=bool), 2),
          "short": ClassPR("short", np.array([0.9]), np.array([1], dtype=bool), 1)}
    point = operating_point(pr, {"open": 0.5, "short": 0.5})
    assert (point["tp"], point["fp"], point["fn"]) == (2, 1, 1)
    assert point["precision"] == pytest.approx(2 / 3, abs=1e-4) and point["f_score"] == pytest.approx(2 / 3, abs=1e-4)


def test_a_hit_needs_an_iou_above_0_33() -> None:
    truth = [boxes(["open"], [[0, 0, 100, 10]])]
    below = [boxes(["open"], [[51, 0, 151, 10]], [0.9])]  # IoU 49/151 = 0.325: a miss (COCO's 0.5 would miss too)
    above = [boxes(["open"], [[49, 0, 149, 10]], [0.9])]  # IoU 51/149 = 0.342: a hit
    thresholds = {"open": 0.5, "short": 0.5}
    assert deeppcb_protocol(truth, below, CLASSES, thresholds)[0]["tp"] == 0
    assert deeppcb_protocol(truth, above, CLASSES, thresholds)[0]["tp"] == 1
    assert deeppcb_protocol(truth, above, CLASSES, thresholds)[0]["map"] == pytest.approx(1.0)
