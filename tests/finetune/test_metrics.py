"""Pure scoring: per-class PR data against a hand-worked example, duplicates, classes without ground truth."""

from __future__ import annotations

import pytest

from agent.detections import Detections
from finetune.metrics import (
    ClassPR,
    class_pr_data,
    confusion_matrix,
    false_rejects,
    match_frame,
    resolve_thresholds,
    score_predictions,
)

CLASSES = ("scratch", "hole", "stain")


def test_class_pr_data_matches_a_hand_worked_example() -> None:
    truth = [Detections.from_labels(["hole", "hole"], [[0, 0, 10, 10], [20, 20, 30, 30]], CLASSES, (40, 40))]
    preds = [Detections.from_labels(["hole", "hole", "hole"], [[0, 0, 10, 10], [30, 0, 39, 9], [20, 20, 30, 31]],
                                    CLASSES, (40, 40), score=[0.9, 0.8, 0.7])]

    pr = class_pr_data(truth, preds, CLASSES, iou=0.5)["hole"]

    assert pr.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert pr.tp.tolist() == [True, False, True]
    assert pr.n_gt == 2
    precision, recall, _ = pr.curve()
    assert precision.tolist() == pytest.approx([1.0, 0.5, 2 / 3])
    assert recall.tolist() == pytest.approx([0.5, 0.5, 1.0])
    assert pr.ap() == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert pr.at_threshold(0.75) == {"threshold": 0.75, "tp": 1, "fp": 1, "fn": 1, "precision": 0.5, "recall": 0.5}


def test_duplicate_detections_count_once() -> None:
    truth = [Detections.from_labels(["scratch"], [[0, 0, 10, 10]], CLASSES, (40, 40))]
    preds = [Detections.from_labels(["scratch", "scratch"], [[0, 0, 10, 10], [0, 0, 10, 10]], CLASSES, (40, 40),
                                    score=[0.9, 0.6])]
    pr = class_pr_data(truth, preds, CLASSES)["scratch"]
    assert pr.tp.tolist() == [True, False]
    assert ClassPR("x", pr.scores, pr.tp, 0).ap() is None


def test_class_without_ground_truth_has_no_ap() -> None:
    truth = [Detections.from_labels(["scratch"], [[0, 0, 10, 10]], CLASSES, (40, 40))]
    report = score_predictions(truth, truth, CLASSES)
    assert report.per_class == {"scratch": pytest.approx(1.0), "hole": None, "stain": None}


def test_a_box_of_the_wrong_class_is_a_confusion_not_a_miss_plus_a_false_alarm() -> None:
    truth = Detections.from_labels(["hole"], [[0, 0, 10, 10]], CLASSES, (40, 40))
    preds = Detections.from_labels(["stain", "scratch"], [[0, 0, 10, 10], [20, 20, 30, 30]], CLASSES, (40, 40),
                                   score=[0.9, 0.8])
    match = match_frame(truth, preds, iou=0.5)
    assert (match.pairs, match.unmatched_pred, match.unmatched_gt, match.errors) == ([(1, 2)], [0], [], 2)
    matrix = confusion_matrix([match], len(CLASSES))
    assert matrix[1, 2] == 1 and matrix[3, 0] == 1 and matrix.sum() == 2


def test_false_rejects_are_known_good_frames_with_a_kept_detection() -> None:
    good = Detections.empty(CLASSES, (40, 40))
    flagged = Detections.from_labels(["hole"], [[0, 0, 10, 10]], CLASSES, (40, 40))
    assert false_rejects([good, good, flagged], [flagged, good, flagged], ["a", "b", "c"]) == {
        "known_good_frames": 2, "count": 1, "rate": 0.5, "frames": ["a"]}


def test_unlisted_classes_get_the_default_threshold() -> None:
    assert resolve_thresholds({"hole": 0.3}, CLASSES) == {"scratch": 0.5, "hole": 0.3, "stain": 0.5}
    assert resolve_thresholds(0.7, CLASSES) == dict.fromkeys(CLASSES, 0.7)
