"""The hand-set backend used by tests, benchmarks and page previews."""

from __future__ import annotations

from agent.station.backend import CameraInfo, StaticBackend, StationBackend


def test_static_backend_answers_what_it_was_given_as_copies() -> None:
    backend: StationBackend = StaticBackend(camera_infos={"cam0": CameraInfo("online")}, version="v7")
    assert backend.model_version() == "v7"
    assert dict(backend.readiness()) == {"model": True, "mqtt": True, "cameras": True}
    cameras = backend.cameras()
    assert cameras["cam0"].status == "online" and cameras["cam0"].counters == {}
    assert backend.cameras() is not cameras
