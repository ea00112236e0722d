"""GenICam cameras through Aravis against a real GigE Vision camera on loopback (`arv-fake-gv-camera-0.8`): settings
reach the camera, frames arrive in every trigger mode, line-scan strips are stitched; plus the pure parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.capture.genicam import GenICamSource, LineStitcher, to_bgr
from agent.capture.registry import create_source
from agent.capture.sources import CorruptFrame, SourceError
from agent.capture.worker import CaptureWorker
from agent.config import CameraConfig, load_settings
from tests.agent.capture.test_worker import FAST, StatusLog, wait_until
from tests.fixtures.genicam import FakeCamera, aravis_or_skip

WIDTH = 512  # the fake camera's sensor width


def genicam_camera(uri: str, **genicam: Any) -> CameraConfig:
    return CameraConfig(name="line", source=uri, fps=50.0, genicam=genicam or None, **FAST)


def grab_frames(source: Any, count: int) -> list[np.ndarray]:
    frames = []
    for _ in range(count * 20):  # a grab may come back empty while the camera is starting
        if source.grab():
            frames.append(source.retrieve())
        if len(frames) == count:
            break
    return frames


def test_settings_from_the_config_reach_the_camera(fake_camera: FakeCamera) -> None:
    source = create_source(genicam_camera(fake_camera.uri, exposure_us=2500, gain_db=4, pixel_format="RGB8"))
    assert isinstance(source, GenICamSource) and source.live
    source.open()
    try:
        frames = grab_frames(source, 3)
    finally:
        source.close()
    assert [f.shape for f in frames] == [(512, WIDTH, 3)] * 3 and all(f.dtype == np.uint8 for f in frames)
    camera = fake_camera.connect()
    assert camera.get_exposure_time() == 2500
    assert camera.get_gain() == 4
    assert camera.get_pixel_format_as_string() == "RGB8"
    assert camera.get_device().get_string_feature_value("TriggerMode") == "Off"


def test_software_trigger_exposes_one_frame_per_grab(fake_camera: FakeCamera) -> None:
    source = create_source(genicam_camera(fake_camera.uri, trigger="software", pixel_format="Mono8"))
    assert not source.live  # the worker paces the grabs at fps, each grab fires one exposure
    source.open()
    try:
        frames = grab_frames(source, 3)
        device = source._camera.get_device()
        trigger = device.get_string_feature_value("TriggerMode"), device.get_string_feature_value("TriggerSource")
    finally:
        source.close()
    assert trigger == ("On", "Software")
    assert [f.shape for f in frames] == [(512, WIDTH, 3)] * 3


def test_hardware_trigger_arms_the_line_and_waits_for_its_edges(fake_camera: FakeCamera) -> None:
    source = create_source(genicam_camera(fake_camera.uri, trigger="hardware", trigger_line="Line0"))
    assert source.live
    source.open()
    try:
        device = source._camera.get_device()
        trigger = device.get_string_feature_value("TriggerMode"), device.get_string_feature_value("TriggerSource")
        grabbed = [source.grab() for _ in range(3)]  # nothing pulses the fake camera's Line0: no exposure
    finally:
        source.close()
    assert trigger == ("On", "Line0")
    assert grabbed == [False, False, False]


def test_line_scan_strips_are_stitched_into_frames_of_the_configured_height(fake_camera: FakeCamera) -> None:
    line_scan = {"lines_per_frame": 50, "lines_per_buffer": 8}
    source = create_source(genicam_camera(fake_camera.uri, pixel_format="Mono8", line_scan=line_scan))
    source.open()
    try:
        frames = grab_frames(source, 2)
    finally:
        source.close()
    assert [f.shape for f in frames] == [(50, WIDTH, 3)] * 2
    assert fake_camera.connect().get_region().height == 8


def test_a_capture_worker_inspects_a_genicam_camera(fake_camera: FakeCamera) -> None:
    status = StatusLog()
    worker = CaptureWorker(genicam_camera(fake_camera.uri, pixel_format="Mono8"), on_status=status)
    worker.start()
    try:
        assert wait_until(lambda: worker.counters.frames >= 3), (worker.status, worker.reason)
        frame = worker.frames.get(timeout=5)
        assert frame is not None and frame.image.shape == (512, WIDTH, 3)
        assert wait_until(lambda: status.statuses[:1] == ["online"]), status.statuses  # reported after the flip
    finally:
        worker.stop()


def test_a_camera_that_is_not_there_is_offline_with_the_reason() -> None:
    aravis_or_skip()
    status = StatusLog()
    worker = CaptureWorker(genicam_camera("genicam://edge-inspect-no-such-camera"), on_status=status)
    worker.start()
    try:
        assert wait_until(lambda: worker.status == "offline", timeout=30)
        assert "edge-inspect-no-such-camera" in worker.reason and worker.reason.startswith("open failed")
        assert worker.loop_alive(60)  # it keeps retrying: a camera switched on later comes online
    finally:
        worker.stop()


def test_grab_before_open_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="before open"):
        GenICamSource("genicam://cam", None).grab()


# ----- without a camera: stitching and pixel formats ------------------------------------------------------------------
def test_stitcher_carries_the_lines_of_a_strip_over_into_the_next_frame() -> None:
    stitcher = LineStitcher(lines_per_frame=5)
    strips = [np.full((3, 4), value, dtype=np.uint8) for value in range(4)]  # 12 lines: rows 0,0,0,1,1,1,2,2,2,...
    frames = [f for f in (stitcher.add(s) for s in strips) if f is not None]
    assert len(frames) == 2
    assert frames[0][:, 0].tolist() == [0, 0, 0, 1, 1]
    assert frames[1][:, 0].tolist() == [1, 2, 2, 2, 3]


def test_stitcher_starts_over_when_the_width_changes() -> None:
    stitcher = LineStitcher(lines_per_frame=4)
    assert stitcher.add(np.zeros((3, 4), np.uint8)) is None
    assert stitcher.add(np.ones((3, 6), np.uint8)) is None  # 3 lines of the new width only
    frame = stitcher.add(np.ones((3, 6), np.uint8))
    assert frame is not None and frame.shape == (4, 6) and frame.min() == 1


def test_pixel_formats_convert_to_bgr() -> None:
    mono16 = np.array([[0x1234, 0xFF00]], dtype=np.uint16)
    assert to_bgr(mono16.tobytes(), 2, 1, "Mono16")[0, :, 0].tolist() == [0x12, 0xFF]
    rgb = np.array([[[10, 20, 30]]], dtype=np.uint8)
    assert to_bgr(rgb.tobytes(), 1, 1, "RGB8")[0, 0].tolist() == [30, 20, 10]
    bayer = np.zeros((4, 4), np.uint8)
    bayer[0::2, 0::2] = 200  # red sites of an RG tile
    assert to_bgr(bayer.tobytes(), 4, 4, "BayerRG8")[1, 1].tolist()[2] > 100  # red ends up in BGR's last channel


def test_short_buffers_and_unknown_formats_are_corrupt_frames() -> None:
    with pytest.raises(CorruptFrame, match="short buffer"):
        to_bgr(b"\x00" * 10, 4, 4, "Mono8")
    with pytest.raises(CorruptFrame, match="YUV422"):
        to_bgr(b"\x00" * 64, 4, 4, "YUV422_8")


def test_the_example_in_docs_cameras_md_is_a_valid_config(tmp_path: Path) -> None:
    aravis_or_skip()
    doc = (Path(__file__).resolve().parents[3] / "docs" / "cameras.md").read_text()
    example = doc.split("Example (verbatim", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "config.yaml"
    config.write_text(example)
    top, web = load_settings(config).cameras
    assert top.genicam is not None and top.genicam.exposure_us == 800 and top.genicam.trigger == "free-run"
    assert web.genicam is not None and web.genicam.trigger_line == "Line1"
    assert web.genicam.line_scan is not None and web.genicam.line_scan.lines_per_frame == 2048


def test_a_camera_unplugged_mid_stream_goes_offline_and_comes_back_when_replugged(fake_camera: FakeCamera) -> None:
    status = StatusLog()
    worker = CaptureWorker(genicam_camera(fake_camera.uri, pixel_format="Mono8"), on_status=status)
    worker.start()
    try:
        assert wait_until(lambda: worker.status == "online"), worker.reason
        fake_camera.stop()
        assert wait_until(lambda: worker.status == "offline", timeout=30)
        assert worker.reason.startswith("no frame for"), worker.reason
        frames_while_away = worker.counters.frames
        fake_camera.start()
        assert wait_until(lambda: worker.status == "online", timeout=60), worker.reason
        assert wait_until(lambda: worker.counters.frames > frames_while_away)
        # the worker's status flips before its callback runs (a log line sits between): wait for what was reported
        assert wait_until(lambda: status.statuses[:3] == ["online", "offline", "online"]), status.statuses
        assert worker.counters.reconnects >= 1
    finally:
        worker.stop()


def test_frames_with_lost_packets_are_counted_as_corrupt_and_never_inspected(fake_camera: FakeCamera) -> None:
    fake_camera.stop()
    fake_camera.start(lost_per_thousand=300)  # a bad cable: most frames arrive with holes
    worker = CaptureWorker(genicam_camera(fake_camera.uri, pixel_format="Mono8"))
    worker.start()
    try:
        assert wait_until(lambda: worker.counters.corrupt >= 3), (worker.status, worker.reason)
    finally:
        worker.stop()
    queued = [worker.frames.get(timeout=0) for _ in range(worker.frames.depth())]
    assert all(f is not None and f.image.shape == (512, WIDTH, 3) for f in queued)
