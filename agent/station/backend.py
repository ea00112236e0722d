"""What the daemon provides to the station: readiness, each camera's capture state, the model being served, what
the recalibration page needs (the config file a run reads, where runs and the model store live, a model reload), and
phrase grounding with the served model (the review page's "find the ..." box).

The station never reaches into the daemon's objects; the daemon hands it something that satisfies
`StationBackend` (frames reach the station separately, through the `LiveBoard`). Every method is called from the
server's threads and must be thread-safe; all but `reload_model` and `ground` must be quick.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agent.detector.tasks import Region, TaskUnsupported
from agent.statedir import StateDir

Grounder = Callable[[npt.NDArray[np.uint8], str], list[Region]]


@dataclass(frozen=True)
class CameraInfo:
    """A camera as capture sees it: `online`, `offline` or `disabled`, why, and its counters (frames, dropped...)."""

    status: str
    reason: str = ""
    counters: Mapping[str, float] = field(default_factory=dict)


class StationBackend(Protocol):
    def readiness(self) -> Mapping[str, bool]:
        """Each readiness check by name (e.g. `model`, `mqtt`, `cameras`) and whether it passes right now."""
        ...

    def cameras(self) -> Mapping[str, CameraInfo]:
        """Every configured camera by name, in display order."""
        ...

    def model_version(self) -> str:
        """The version of the model that inspects frames now."""
        ...

    def config_path(self) -> Path | None:
        """The config file the daemon was started from (a recalibration run reads it); None when there is none."""
        ...

    def runs_dir(self) -> Path | None:
        """The folder recalibration runs write into (one sub-folder per run); None: no recalibration here."""
        ...

    def models_dir(self) -> Path | None:
        """The model store's folder; None: no model store here."""
        ...

    def reload_model(self) -> str:
        """Load the model store's current adapter and swap it in (slow: seconds); returns the version now served.
        Raises when the model does not load; the old one then keeps serving."""
        ...

    def ground(self, frame: npt.NDArray[np.uint8], phrase: str) -> list[Region]:
        """Phrase grounding of `phrase` on a BGR frame with the served model (slow: a decode). Raises
        `TaskUnsupported` when the served backend cannot ground (onnx), `TaskError` for a phrase it cannot write."""
        ...


def _no_reload() -> str:
    raise RuntimeError("this station cannot reload the daemon's model")


def _no_grounding(_frame: npt.NDArray[np.uint8], _phrase: str) -> list[Region]:
    raise TaskUnsupported("this station has no model to ground phrases with")


@dataclass
class StaticBackend:
    """A backend whose answers are set by hand: for tests, benchmarks and pages shown without a daemon.
    `reload_model` counts its calls and takes the new version from `on_reload` when given."""

    checks: dict[str, bool] = field(default_factory=lambda: {"model": True, "mqtt": True, "cameras": True})
    camera_infos: dict[str, CameraInfo] = field(default_factory=dict)
    version: str = "unknown"
    config_file: Path | None = None
    state_dir: Path | None = None  # runs go to {state_dir}/recalibration, the store is {state_dir}/models
    on_reload: Callable[[], str] | None = None
    reloads: int = 0
    grounder: Grounder = _no_grounding  # what `ground` answers with

    def readiness(self) -> Mapping[str, bool]:
        return dict(self.checks)

    def cameras(self) -> Mapping[str, CameraInfo]:
        return dict(self.camera_infos)

    def model_version(self) -> str:
        return self.version

    def config_path(self) -> Path | None:
        return self.config_file

    def runs_dir(self) -> Path | None:
        return None if self.state_dir is None else StateDir(self.state_dir).recalibration

    def models_dir(self) -> Path | None:
        return None if self.state_dir is None else StateDir(self.state_dir).models

    def reload_model(self) -> str:
        self.reloads += 1
        if self.on_reload is not None:
            self.version = self.on_reload()
        return self.version

    def ground(self, frame: npt.NDArray[np.uint8], phrase: str) -> list[Region]:
        return self.grounder(frame, phrase)


@dataclass(frozen=True)
class CallbackBackend:
    """A backend that asks the daemon through callables (the station never imports the daemon). The last five have
    defaults for a station without recalibration or a model: no config file, no runs, no store, no reload, no
    grounding."""

    readiness_of: Callable[[], Mapping[str, bool]]
    cameras_of: Callable[[], Mapping[str, CameraInfo]]
    model_version_of: Callable[[], str]
    config_path_of: Callable[[], Path | None] = lambda: None
    runs_dir_of: Callable[[], Path | None] = lambda: None
    models_dir_of: Callable[[], Path | None] = lambda: None
    reload_model_of: Callable[[], str] = _no_reload
    ground_of: Grounder = _no_grounding

    def readiness(self) -> Mapping[str, bool]:
        return self.readiness_of()

    def cameras(self) -> Mapping[str, CameraInfo]:
        return self.cameras_of()

    def model_version(self) -> str:
        return self.model_version_of()

    def config_path(self) -> Path | None:
        return self.config_path_of()

    def runs_dir(self) -> Path | None:
        return self.runs_dir_of()

    def models_dir(self) -> Path | None:
        return self.models_dir_of()

    def reload_model(self) -> str:
        return self.reload_model_of()

    def ground(self, frame: npt.NDArray[np.uint8], phrase: str) -> list[Region]:
        return self.ground_of(frame, phrase)
