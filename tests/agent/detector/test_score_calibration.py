"""Calibrated scores on the daemon's side: a model directory's calibration.json (or a store manifest's entry) read and
checked, applied per class as an increasing map, and nothing at all when there is none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.detections import Detections
from agent.detector.score_calibration import (
    CALIBRATION_FILE,
    IDENTITY,
    CalibratedDetector,
    CalibrationError,
    ClassCalibration,
    ScoreCalibration,
    calibrated,
    logit,
    manifest_calibration,
    read_calibration,
    sigmoid,
)

CLASSES = ("scratch", "hole", "stain")
SCRATCH = ClassCalibration(True, slope=2.0, offset=1.0, reason="Platt scaling on 40 boxes", notes={"boxes": 40})
HOLE = ClassCalibration(False, reason="raw scores kept: only 3 real box(es) (need 5)", notes={"boxes": 9})


def boxes(labels: list[str], scores: list[float]) -> Detections:
    xyxy = [[i, i, i + 10, i + 10] for i in range(len(labels))]
    return Detections.from_labels(labels, xyxy, CLASSES, (64, 64), score=scores)


def test_a_fitted_class_maps_through_the_logit_and_other_classes_keep_their_scores() -> None:
    calibration = ScoreCalibration({"scratch": SCRATCH, "hole": HOLE})
    dets = boxes(["scratch", "hole", "stain", "scratch"], [0.2, 0.2, 0.2, 0.6])
    out = calibration.apply(dets)
    expected = sigmoid(2.0 * logit([0.2, 0.6]) + 1.0)
    assert out.score[[0, 3]] == pytest.approx(expected, abs=1e-6)
    assert out.score[[1, 2]] == pytest.approx([0.2, 0.2])  # hole not fitted, stain not listed: raw
    assert np.array_equal(out.xyxy, dets.xyxy) and out.labels == dets.labels
    assert dets.score[0] == pytest.approx(0.2)  # the input value is left as it was


def test_the_map_is_strictly_increasing_and_stays_inside_0_1_even_at_the_ends() -> None:
    raw = np.linspace(0.0, 1.0, 201)
    mapped = SCRATCH(raw)
    assert np.all(np.diff(mapped) > 0)
    assert mapped.min() > 0.0 and mapped.max() < 1.0


def test_without_a_file_the_scores_are_the_detectors_own(tmp_path: Path) -> None:
    calibration = read_calibration(tmp_path)
    assert calibration == IDENTITY and calibration.is_identity
    dets = boxes(["scratch"], [0.3])
    assert calibration.apply(dets) is dets
    assert read_calibration("org/hub-model").is_identity  # a hub id has no folder to read


def test_the_file_round_trips_what_the_fit_wrote(tmp_path: Path) -> None:
    calibration = ScoreCalibration({"scratch": SCRATCH, "hole": HOLE})
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(calibration.to_json()))
    assert read_calibration(tmp_path) == calibration
    assert json.loads((tmp_path / CALIBRATION_FILE).read_text())["format"] == "edge-inspect.score-calibration/1"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"calibration.json is not JSON"),
    ('{"scratch": 0.3}', r"calibration.json: expected an object with format 'edge-inspect.score-calibration/1'"),
    ('{"format": "edge-inspect.score-calibration/1", "method": "isotonic", "classes": {}}',
     r"unknown method 'isotonic'"),
    ('{"format": "edge-inspect.score-calibration/1", "method": "platt", "classes": {"scratch": {"fitted": true, '
     '"slope": -1.0, "offset": 0.0}}}', r"class 'scratch': slope must be > 0 .* got -1.0"),
    ('{"format": "edge-inspect.score-calibration/1", "method": "platt", "classes": {"hole": {"fitted": true, '
     '"slope": 1.0}}}', r"class 'hole': offset must be a finite number, got None"),
    ('{"format": "edge-inspect.score-calibration/1", "method": "platt", "classes": {"hole": "yes"}}',
     r"class 'hole': expected an object with a true/false 'fitted'"),
])
def test_a_corrupt_file_is_refused_naming_the_file_and_the_entry(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(content)
    with pytest.raises(CalibrationError, match=message) as caught:
        read_calibration(tmp_path)
    assert str(tmp_path / CALIBRATION_FILE) in str(caught.value)


def test_a_store_manifest_carries_it_under_its_key_and_a_manifest_without_serves_raw_scores() -> None:
    calibration = ScoreCalibration({"scratch": SCRATCH})
    assert manifest_calibration({"score_calibration": calibration.to_json()}, "v0002/manifest.json") == calibration
    assert manifest_calibration({"recalibration_run": "r1"}, "v0001/manifest.json") == IDENTITY
    with pytest.raises(CalibrationError, match=r"v0003/manifest.json \(score_calibration\): expected an object"):
        manifest_calibration({"score_calibration": [1, 2]}, "v0003/manifest.json")


class FixedDetector:
    class_names: tuple[str, ...] = CLASSES
    version = "fixed+v0001"
    image_size = (64, 64)

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        return [boxes(["scratch", "stain"], [0.2, 0.4]) for _ in frames]


def test_a_calibrated_detector_publishes_calibrated_scores_and_is_otherwise_the_same_detector() -> None:
    inner = FixedDetector()
    assert calibrated(inner, IDENTITY) is inner  # nothing to do: no wrapper in the hot path
    detector = calibrated(inner, ScoreCalibration({"scratch": SCRATCH}))
    assert isinstance(detector, CalibratedDetector)
    assert detector.version == "fixed+v0001" and detector.class_names == CLASSES
    assert detector.image_size == (64, 64)  # type: ignore[attr-defined]
    (out,) = detector.detect([np.zeros((64, 64, 3), dtype=np.uint8)])
    assert out.score.tolist() == pytest.approx([float(SCRATCH(0.2)), 0.4])
