"""Which model the daemon serves: the base model, plus the config's adapter or the model store's `current` one.

Used at start-up and by every reload (`agent/daemon.py`), and by the pipeline benchmark to build the same detector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.config import Settings
from agent.decide import Thresholds
from agent.detector.base import Detector, DetectorError
from agent.detector.factory import create_detector
from agent.modeldir import read_thresholds
from agent.store.files import StoreError
from agent.store.model_store import ModelStore


@dataclass(frozen=True)
class ModelChoice:
    """Which adapter to serve and the per-class thresholds that came with it."""

    adapter: Path | None
    thresholds: dict[str, float]
    source: str  # "config", "store:<version>" or "base"
    export: Path | None = None  # on the onnx backend: the store version's merged ONNX export, served instead


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
    the store version must carry an ONNX export (a recalibration run on an onnx line stores one)."""
    base = base_thresholds(settings)
    if settings.model.adapter is not None:
        return ModelChoice(settings.model.adapter, base, "config")
    store = ModelStore.in_state_dir(settings.state_dir)
    version = store.current()
    if version is None:
        return ModelChoice(None, base, "base")
    store.verify_base(base_model_dir(settings))
    manifest = store.verify(version)
    export = store.export_path(version) if settings.model.backend == "onnx" else None
    if settings.model.backend == "onnx" and export is None:
        raise StoreError(f"adapter {version} has no ONNX export, and the onnx backend serves only exports: promote a "
                         "version recalibrated on this line, or serve it with a torch backend")
    return ModelChoice(store.path(version), {**base, **manifest.thresholds}, f"store:{version}", export)


def base_thresholds(settings: Settings) -> dict[str, float]:
    """The model directory's own `thresholds.json` (the shipped demo model has one); a recalibrated adapter's
    manifest and then the config override it per class. A malformed file is a `DetectorError`: a model that would
    judge with thresholds nobody chose must not serve."""
    try:
        return read_thresholds(settings.model.path)
    except ValueError as exc:
        raise DetectorError(str(exc)) from None


DetectorFactory = Callable[[Settings, ModelChoice], Detector]


def detector_from_settings(settings: Settings, choice: ModelChoice) -> Detector:
    """The configured backend with the configured base model and classes, and the chosen adapter (on the onnx
    backend: the chosen version's stored export)."""
    m = settings.model
    if choice.export is not None:
        return create_detector("onnx", choice.export, None, m.classes, device=m.device,
                               max_new_tokens=m.max_new_tokens)
    return create_detector(m.backend, m.path, choice.adapter, m.classes, device=m.device,
                           max_new_tokens=m.max_new_tokens)


def thresholds_for(settings: Settings, choice: ModelChoice) -> Thresholds:
    """The model directory's thresholds, then those fitted by the last recalibration (manifest), then the config's
    own, per class: the later wins."""
    m = settings.model
    return Thresholds({**choice.thresholds, **m.thresholds}, m.default_threshold, m.uncertain_band)
