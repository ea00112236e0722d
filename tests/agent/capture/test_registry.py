"""The URI -> source registry: what check-config refuses, and a camera whose source cannot be built goes offline
with the reason (it never raises into the daemon)."""

from __future__ import annotations

from agent.capture.genicam import GenICamSource
from agent.capture.registry import UnavailableSource, create_source, source_problem
from agent.capture.sources import SyntheticSource
from agent.capture.worker import CaptureWorker
from agent.config import CameraConfig
from tests.agent.capture.test_worker import FAST, StatusLog, wait_until
from tests.fixtures.genicam import aravis_or_skip


def test_uris_that_a_source_serves_have_no_problem() -> None:
    assert source_problem("synthetic:seed=1") is None
    assert source_problem("rtsp://cam.local/stream") is None
    assert source_problem("/dev/video3") is None


def test_uris_that_no_source_serves_are_explained() -> None:
    assert "unsupported source URI 'ftp://cam.local/stream'" in str(source_problem("ftp://cam.local/stream"))
    assert "needs a device id" in str(source_problem("genicam://"))


def test_genicam_uris_are_accepted_where_aravis_is_installed() -> None:
    aravis_or_skip()
    assert source_problem("genicam://Basler-40123456") is None
    assert source_problem("GENICAM://192.168.10.21") is None


def test_the_scheme_table_picks_the_genicam_source() -> None:
    camera = CameraConfig.model_construct(**{**CameraConfig().model_dump(), "source": "genicam://cam-1"})
    assert isinstance(create_source(camera), GenICamSource)
    assert isinstance(create_source(CameraConfig(source="synthetic:size=32")), SyntheticSource)


def test_a_source_that_cannot_be_built_becomes_an_offline_camera_with_the_reason() -> None:
    # model_construct skips validation: a URI that slipped past check-config (the daemon must survive it anyway)
    camera = CameraConfig.model_construct(**{**CameraConfig(**FAST).model_dump(), "source": "ftp://cam.local/stream"})
    source = create_source(camera)
    assert isinstance(source, UnavailableSource)
    status = StatusLog()
    worker = CaptureWorker(camera, on_status=status)
    worker.start()
    try:
        assert wait_until(lambda: status.statuses == ["offline"])
        assert "unsupported source URI 'ftp://cam.local/stream'" in worker.reason
        assert worker.loop_alive(60)  # the watchdog is not starved by one bad camera
    finally:
        worker.stop()
