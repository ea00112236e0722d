"""Golden frames whose line verdict changes between the current model and the candidate, with the truth."""

from __future__ import annotations

from pathlib import Path

from agent.decide import Thresholds
from agent.detections import Detections
from calibration.verdicts import change_kind, verdict_changes
from finetune.data.dataset import Dataset, Sample

CLASSES = ("scratch", "hole")


def boxes(*scores: float) -> Detections:
    return Detections.from_labels(["hole"] * len(scores), [[5, 5, 20, 20]] * len(scores), CLASSES, (64, 64),
                                  score=list(scores))


def test_each_changed_frame_is_listed_with_both_verdicts_the_truth_and_what_changed(tmp_path: Path) -> None:
    truth = [boxes(1.0), boxes(), boxes(1.0), boxes()]
    golden = Dataset(CLASSES, [Sample(tmp_path / "golden" / "images" / f"{i}.png", t) for i, t in enumerate(truth)])
    current = [boxes(), boxes(0.9), boxes(0.9), boxes()]
    candidate = [boxes(0.9), boxes(), boxes(0.9), boxes(0.55)]  # 0.55: within the band of 0.5, so uncertain
    thresholds = Thresholds({}, 0.5, 0.1)
    changes = verdict_changes(golden, [11, 12, 13, None], current, candidate, (thresholds, thresholds), tmp_path)
    assert (changes["frames"], changes["changed"], changes["fixed"], changes["broken"]) == (4, 3, 2, 1)
    assert changes["frames_changed"] == [
        {"entry_id": 11, "image": "golden/images/0.png", "truth": "fail", "current": "pass", "candidate": "fail",
         "change": "fixed"},
        {"entry_id": 12, "image": "golden/images/1.png", "truth": "pass", "current": "fail", "candidate": "pass",
         "change": "fixed"},
        {"entry_id": None, "image": "golden/images/3.png", "truth": "pass", "current": "pass",
         "candidate": "uncertain", "change": "broken"},
    ]


def test_each_model_is_judged_with_its_own_thresholds(tmp_path: Path) -> None:
    golden = Dataset(CLASSES, [Sample(tmp_path / "a.png", boxes(1.0))])
    strict, lenient = Thresholds({"hole": 0.95}, 0.5, 0.0), Thresholds({"hole": 0.6}, 0.5, 0.0)
    changes = verdict_changes(golden, [1], [boxes(0.8)], [boxes(0.8)], (strict, lenient), tmp_path)
    assert [(r["current"], r["candidate"]) for r in changes["frames_changed"]] == [("pass", "fail")]


def test_change_kinds() -> None:
    assert change_kind("fail", "pass", "fail") == "fixed"
    assert change_kind("pass", "pass", "uncertain") == "broken"
    assert change_kind("pass", "fail", "uncertain") == "other"
