"""Which model the daemon serves: the base model, plus the config's adapter or the model store's `current` one.

Used at start-up and by every reload (`agent/daemon.py`), and by the pipeline benchmark to build the same detector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import Settings
from agent.decide import Thresholds
from agent.detector.base import Detector, DetectorError
from agent.detector.factory import create_detector
from agent.detector.score_calibration import (
    CalibrationError,
    ScoreCalibration,
    calibrated,
    manifest_calibration,
    read_calibration,
)
from agent.measure import SizeRule
from agent.modeldir import read_thresholds
from agent.store.files import StoreError
from agent.store.manifest import MANIFEST
from agent.store.model_store import ModelStore


@dataclass(frozen=True)
class ModelChoice:
    """Which adapter to serve and the per-class thresholds and score calibration that came with it."""

    adapter: Path | None
    thresholds: dict[str, float]
    source: str  # "config", "store:<version>" or "base"
    export: Path | None = None  # on the onnx backend: the store version's merged ONNX export, served instead
    calibration: ScoreCalibration = field(default_factory=ScoreCalibration)  # applied before the thresholds


def base_model_dir(settings: Settings) -> Path:
    """The base model adapters are trained on and belong to: `model.path`, except on an onnx line, whose model.path
    is an ONNX export: there `recalibration.base_model`, the folder it was exported from."""
    if settings.model.backend == "onnx" and settings.recalibration.base_model is not None:
        return settings.recalibration.base_model
    return settings.model.path


def choose_model(settings: Settings) -> ModelChoice:
    """`model.adapter` from the config wins; else the model store's `current` adapter (verified: manifest, base
    identity, sha256 of every weights file), else the bare base model. A store that fails verification raises
    `StoreError`: serving a corrupt or foreign adapter silently would be worse than refusing. On the onnx backend
    the store version must carry an ONNX export (a recalibration run on an onnx line stores one).

    The score calibration goes with the thresholds fitted on it: a store version's own (a version stored without
    one was fitted on raw scores and serves them raw), else the model directory's calibration.json."""
    base = base_thresholds(settings)
    if settings.model.adapter is not None:
        return ModelChoice(settings.model.adapter, base, "config", calibration=base_calibration(settings))
    store = ModelStore.in_state_dir(settings.state_dir)
    version = store.current()
    if version is None:
        return ModelChoice(None, base, "base", calibration=base_calibration(settings))
    store.verify_base(base_model_dir(settings))
    manifest = store.verify(version)
    export = store.export_path(version) if settings.model.backend == "onnx" else None
    if settings.model.backend == "onnx" and export is None:
        raise StoreError(f"adapter {version} has no ONNX export, and the onnx backend serves only exports: promote a "
                         "version recalibrated on this line, or serve it with a torch backend")
    calibration = store_calibration(manifest.extra, store.path(version))
    return ModelChoice(store.path(version), {**base, **manifest.thresholds}, f"store:{version}", export, calibration)


def base_thresholds(settings: Settings) -> dict[str, float]:
    """The model directory's own `thresholds.json` (the shipped demo model has one); a recalibrated adapter's
    manifest and then the config override it per class. A malformed file is a `DetectorError`: a model that would
    judge with thresholds nobody chose must not serve."""
    try:
        return read_thresholds(settings.model.path)
    except ValueError as exc:
        raise DetectorError(str(exc)) from None


def base_calibration(settings: Settings) -> ScoreCalibration:
    """The model directory's `calibration.json` (identity without one); a malformed file is a `DetectorError`,
    like a malformed thresholds.json: thresholds fitted on calibrated scores must not judge raw ones."""
    try:
        return read_calibration(settings.model.path)
    except CalibrationError as exc:
        raise DetectorError(str(exc)) from None


def store_calibration(extra: Mapping[str, Any], version_dir: Path) -> ScoreCalibration:
    """A store version's calibration from its manifest; malformed: `StoreError` (the version must not serve)."""
    try:
        return manifest_calibration(extra, version_dir / MANIFEST)
    except CalibrationError as exc:
        raise StoreError(str(exc)) from None


DetectorFactory = Callable[[Settings, ModelChoice], Detector]


def detector_from_settings(settings: Settings, choice: ModelChoice) -> Detector:
    """The configured backend with the configured base model and classes, and the chosen adapter (on the onnx
    backend: the chosen version's stored export); its boxes carry the choice's calibrated scores."""
    m = settings.model
    if choice.export is not None:
        detector = create_detector("onnx", choice.export, None, m.classes, device=m.device,
                                   max_new_tokens=m.max_new_tokens)
    else:
        detector = create_detector(m.backend, m.path, choice.adapter, m.classes, device=m.device,
                                   max_new_tokens=m.max_new_tokens, quantize=m.quantize)
    return calibrated(detector, choice.calibration)


def thresholds_for(settings: Settings, choice: ModelChoice) -> Thresholds:
    """The model directory's thresholds, then those fitted by the last recalibration (manifest), then the config's
    own, per class: the later wins. The config's size rules come with them (they decide too)."""
    m = settings.model
    rules = {label: SizeRule(rule.min_length_mm, rule.min_area_mm2) for label, rule in m.size_rules.items()}
    return Thresholds({**choice.thresholds, **m.thresholds}, m.default_threshold, m.uncertain_band, rules)
