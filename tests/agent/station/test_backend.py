"""The hand-set backend used by tests, benchmarks and page previews."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detector.tasks import Region, TaskUnsupported
from agent.station.backend import CallbackBackend, CameraInfo, StaticBackend, StationBackend


def test_static_backend_answers_what_it_was_given_as_copies() -> None:
    backend: StationBackend = StaticBackend(camera_infos={"cam0": CameraInfo("online")}, version="v7")
    assert backend.model_version() == "v7"
    assert dict(backend.readiness()) == {"model": True, "mqtt": True, "cameras": True}
    cameras = backend.cameras()
    assert cameras["cam0"].status == "online" and cameras["cam0"].counters == {}
    assert backend.cameras() is not cameras


def test_without_a_grounder_a_backend_says_it_cannot_ground() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    for backend in (StaticBackend(), CallbackBackend(dict, dict, lambda: "v1")):
        with pytest.raises(TaskUnsupported, match="no model to ground phrases with"):
            backend.ground(frame, "scratch")
    found = [Region("scratch", (0, 0, 1, 1), 0.5)]
    assert StaticBackend(grounder=lambda f, p: found).ground(frame, "scratch") == found
