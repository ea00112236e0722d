"""Sources from URIs: dispatch, corrupt-file detection, and real OpenCV replay of a video file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.capture.sources import (
    CorruptFrame,
    ImageFilesSource,
    OpenCVSource,
    SourceError,
    SourceExhausted,
    SourceOptions,
    SyntheticSource,
    VideoFileSource,
    decode_image_bytes,
    gstreamer_available,
    open_source,
)


def _png_bytes(value: int = 100, size: int = 16) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((size, size, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def _jpeg_bytes(size: int = 64) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def write_video(path: Path, frames: int, size: tuple[int, int] = (64, 48)) -> list[int]:
    """An MJPG .avi whose frame i is a flat grey of value 20 + 10 * i; returns those values."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    values = [20 + 10 * i for i in range(frames)]
    for value in values:
        writer.write(np.full((size[1], size[0], 3), value, np.uint8))
    writer.release()
    return values


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("synthetic:seed=1,size=64", SyntheticSource),
        ("rtsp://10.0.0.5/stream1", OpenCVSource),
        ("http://cam.local/mjpeg", OpenCVSource),
        ("0", OpenCVSource),
        ("/dev/video2", OpenCVSource),
        ("/data/frames", ImageFilesSource),
        ("/data/part.png", ImageFilesSource),
        ("file:///data/line.avi", VideoFileSource),
    ],
)
def test_uri_picks_the_matching_source(uri: str, kind: type) -> None:
    source = open_source(uri)
    assert type(source) is kind
    assert source.uri == uri


def test_network_and_device_sources_are_live_and_replays_are_not() -> None:
    assert open_source("rtsp://h/s").live
    assert open_source("/dev/video0").live
    assert not open_source("/data/line.mp4").live
    assert not open_source("synthetic:").live


@pytest.mark.parametrize("uri", ["ftp://host/x", "", "  "])
def test_unsupported_uri_is_rejected_naming_it(uri: str) -> None:
    with pytest.raises(ValueError, match="URI"):
        open_source(uri)


def test_bad_synthetic_parameters_are_rejected_naming_the_key() -> None:
    with pytest.raises(ValueError, match="bogus"):
        open_source("synthetic:bogus=1")


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
def test_gst_source_without_gstreamer_build_says_so() -> None:
    with pytest.raises(ValueError, match="GStreamer"):
        open_source("gst:videotestsrc ! appsink")


def test_empty_gst_pipeline_is_rejected() -> None:
    with pytest.raises(ValueError, match="pipeline"):
        open_source("gst:")


def test_network_source_that_cannot_connect_raises_source_error() -> None:
    # port 9 on loopback (discard) is closed: FFmpeg fails fast and the error names the URI
    source = open_source("rtsp://127.0.0.1:9/none", SourceOptions(open_timeout_s=1, read_timeout_s=1))
    with pytest.raises(SourceError, match="127.0.0.1:9"):
        source.open()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"not an image at all" * 10, "not a decodable image"),
        (_png_bytes()[:-20], "truncated PNG"),
        (_jpeg_bytes()[: len(_jpeg_bytes()) // 2], "truncated JPEG"),
    ],
)
def test_corrupt_image_bytes_raise_corrupt_frame(data: bytes, why: str) -> None:
    with pytest.raises(CorruptFrame, match=why):
        decode_image_bytes(data, "f.img")


def test_complete_images_decode_to_bgr() -> None:
    assert decode_image_bytes(_png_bytes(100), "a.png").shape == (16, 16, 3)
    assert decode_image_bytes(_jpeg_bytes(), "a.jpg").shape == (64, 64, 3)


def test_directory_replays_images_in_name_order_and_skips_non_images(tmp_path: Path) -> None:
    for i, value in enumerate([10, 20, 30]):
        (tmp_path / f"{i:03d}.png").write_bytes(_png_bytes(value))
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path), SourceOptions(loop=False))
    source.open()
    seen = [int(source.read()[0, 0, 0]) for _ in range(3)]  # type: ignore[index]
    assert seen == [10, 20, 30]
    with pytest.raises(SourceExhausted):
        source.grab()


def test_directory_loops_when_asked(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_png_bytes(10))
    (tmp_path / "b.png").write_bytes(_png_bytes(20))
    source = open_source(str(tmp_path), SourceOptions(loop=True))
    source.open()
    seen = [int(source.read()[0, 0, 0]) for _ in range(5)]  # type: ignore[index]
    assert seen == [10, 20, 10, 20, 10]


def test_missing_directory_fails_to_open(tmp_path: Path) -> None:
    source = open_source(str(tmp_path / "gone"))
    with pytest.raises(SourceError, match="does not exist"):
        source.open()


def test_video_file_is_read_through_opencv(tmp_path: Path) -> None:
    values = write_video(tmp_path / "line.avi", frames=5)
    source = open_source(str(tmp_path / "line.avi"), SourceOptions(loop=False))
    source.open()
    means = [float(source.read().mean()) for _ in values]  # type: ignore[union-attr]
    assert means == pytest.approx(values, abs=3)  # MJPG is lossy; flat frames stay within a few levels
    with pytest.raises(SourceExhausted):
        source.grab()
    source.close()


def test_video_file_rewinds_when_looping(tmp_path: Path) -> None:
    values = write_video(tmp_path / "line.avi", frames=3)
    source = open_source(str(tmp_path / "line.avi"), SourceOptions(loop=True))
    source.open()
    means = [float(source.read().mean()) for _ in range(7)]  # type: ignore[union-attr]
    assert means == pytest.approx(values * 2 + values[:1], abs=3)
    source.close()


def test_synthetic_source_gives_the_generator_frames() -> None:
    from agent.capture.synthetic import SyntheticGenerator

    source = open_source("synthetic:seed=3,size=64")
    source.open()
    first, second = source.read(), source.read()
    expected = SyntheticGenerator(seed=3, size=64)
    assert np.array_equal(first, expected.frame(0).image)  # type: ignore[arg-type]
    assert np.array_equal(second, expected.frame(1).image)  # type: ignore[arg-type]
