"""Calibrated box scores: a per-class map from the detector's raw score to the chance that such a box is real.

The map is Platt scaling on the score's logit, `p = sigmoid(slope * logit(s) + offset)` with `slope > 0`: strictly
increasing, so it never reorders a class's boxes (AP and PR curves are unchanged; only the numbers move). A
recalibration run fits it (`calibration/score_calibration.py`, before the thresholds, which are then fitted on the
calibrated scores); this module only reads it and applies it, so the daemon needs nothing from `calibration`.

Where it is kept, next to the thresholds it belongs to:

- a model directory's `calibration.json` (`read_calibration`; next to `thresholds.json`), and
- a store version's manifest, key `score_calibration` (`manifest_calibration`); a version without one was fitted on
  raw scores and serves them raw.

The JSON value (also the file's content)::

    {"format": "edge-inspect.score-calibration/1", "method": "platt",
     "classes": {"scratch": {"fitted": true, "slope": 1.7, "offset": 2.3, ...},
                 "hole": {"fitted": false, "reason": "only 3 real boxes (need 5)", ...}}}

A class that is absent or `"fitted": false` keeps its raw score (identity); extra keys (box counts, ECE) are notes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from agent.detector.base import Detector

CALIBRATION_FILE = "calibration.json"
MANIFEST_KEY = "score_calibration"
FORMAT = "edge-inspect.score-calibration/1"
METHOD = "platt"
_EPS = 1e-6  # raw scores are clipped to [eps, 1 - eps] before the logit (a score of exactly 0 or 1 stays finite)


class CalibrationError(ValueError):
    """A calibration that cannot be used; the message names the file (or manifest) and the bad entry."""


def logit(scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    p = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.asarray(np.log(p) - np.log1p(-p))


def sigmoid(z: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))))  # no overflow for large |z|


@dataclass(frozen=True)
class ClassCalibration:
    """One class's map; `fitted=False` is the identity (too little data, say `reason`)."""

    fitted: bool = False
    slope: float = 1.0
    offset: float = 0.0
    reason: str = ""
    notes: Mapping[str, Any] = field(default_factory=dict)  # box counts, ECE before/after: for people, not the map

    def __call__(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        raw = np.asarray(scores, dtype=np.float64)
        return sigmoid(self.slope * logit(raw) + self.offset) if self.fitted else raw

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"fitted": self.fitted, "reason": self.reason, **self.notes}
        return {**data, "slope": self.slope, "offset": self.offset} if self.fitted else data


@dataclass(frozen=True)
class ScoreCalibration:
    """Per-class maps by class name; a class not listed keeps its raw score."""

    classes: Mapping[str, ClassCalibration] = field(default_factory=dict)
    method: str = METHOD

    @property
    def is_identity(self) -> bool:
        return not any(c.fitted for c in self.classes.values())

    def of(self, label: str) -> ClassCalibration:
        return self.classes.get(label, ClassCalibration(reason="not in the calibration"))

    def apply(self, dets: Detections) -> Detections:
        """The same boxes with calibrated scores (a new value; `dets` is unchanged)."""
        if self.is_identity or len(dets) == 0:
            return dets
        score = dets.score.astype(np.float64)
        for class_id, name in enumerate(dets.class_names):
            mine = dets.class_id == class_id
            if mine.any() and name in self.classes:
                score[mine] = self.classes[name](score[mine])
        return dets.with_scores(score)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": self.method,
                "classes": {name: c.to_json() for name, c in self.classes.items()}}

    @classmethod
    def from_json(cls, data: object, where: str) -> ScoreCalibration:
        """Validate what `to_json` wrote; `CalibrationError` names `where` and the bad entry."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise CalibrationError(f"{where}: expected an object with format {FORMAT!r}, got {found!r}")
        if data.get("method") != METHOD:
            raise CalibrationError(f"{where}: unknown method {data.get('method')!r}; known: {METHOD!r}")
        classes = data.get("classes")
        if not isinstance(classes, dict):
            raise CalibrationError(f"{where}: 'classes' must map class names to their calibration")
        return cls({str(name): _class_from_json(entry, f"{where}: class {name!r}") for name, entry in classes.items()})


def _class_from_json(entry: object, where: str) -> ClassCalibration:
    if not isinstance(entry, dict) or not isinstance(entry.get("fitted"), bool):
        raise CalibrationError(f"{where}: expected an object with a true/false 'fitted', got {entry!r}")
    notes = {k: v for k, v in entry.items() if k not in ("fitted", "slope", "offset", "reason")}
    reason = str(entry.get("reason", ""))
    if not entry["fitted"]:
        return ClassCalibration(False, reason=reason, notes=notes)
    slope, offset = entry.get("slope"), entry.get("offset")
    for key, value in (("slope", slope), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CalibrationError(f"{where}: {key} must be a finite number, got {value!r}")
    if float(slope) <= 0.0:  # type: ignore[arg-type]
        raise CalibrationError(f"{where}: slope must be > 0 (an increasing map), got {slope!r}")
    return ClassCalibration(True, float(slope), float(offset), reason, notes)  # type: ignore[arg-type]


IDENTITY = ScoreCalibration()


def read_calibration(model_dir: str | Path) -> ScoreCalibration:
    """A model directory's `calibration.json`; the identity when it has none (a hub id, a model never calibrated).
    A file that is not JSON or not a calibration raises `CalibrationError` naming it."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return IDENTITY
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise CalibrationError(f"{path} is not JSON: {exc}") from None
    return ScoreCalibration.from_json(data, str(path))


def manifest_calibration(extra: Mapping[str, Any], where: str | Path) -> ScoreCalibration:
    """The calibration a store version's manifest carries (`Manifest.extra`); identity for a version without."""
    if MANIFEST_KEY not in extra:
        return IDENTITY
    return ScoreCalibration.from_json(extra[MANIFEST_KEY], f"{where} ({MANIFEST_KEY})")


class CalibratedDetector:
    """A detector whose boxes leave with calibrated scores; everything else is the wrapped detector's."""

    def __init__(self, inner: Detector, calibration: ScoreCalibration) -> None:
        self.inner, self.calibration = inner, calibration
        self.class_names: tuple[str, ...] = inner.class_names
        self.version: str = inner.version

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        return [self.calibration.apply(d) for d in self.inner.detect(frames)]

    def __getattr__(self, name: str) -> Any:  # image_size, last_timing, ...: the backend's own
        if name == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def calibrated(detector: Detector, calibration: ScoreCalibration) -> Detector:
    """`detector` itself when the calibration changes nothing, else wrapped in `CalibratedDetector`."""
    return detector if calibration.is_identity else CalibratedDetector(detector, calibration)
