"""Frame sources from URIs: cameras (V4L2 index or /dev/videoN), network streams, GStreamer, files and synthetic.

Every source has the same small surface, driven by one capture worker thread (`agent.capture.worker`):
`open()`, `grab() -> bool`, `retrieve() -> image`, `close()`. `grab` advances to the next frame without decoding
it, so a worker reading a live camera faster than it needs can discard frames cheaply and always hand on the
newest one. Errors are split by what the worker must do about them:

- `CorruptFrame`: this one frame is unusable (garbage bytes, truncated file, empty image): count it, skip it.
- `SourceError`: the source is gone (device unplugged, stream closed, directory missing): close and reconnect.
- `SourceExhausted`: a replayed file or directory reached its end with `loop=False`: stop for good.
- `grab()` returning False: no frame right now (read timeout, empty directory); the worker's no-frame timeout
  decides when that turns into a reconnect.

`live` sources produce frames at their own rate; replayed sources (files, directories, synthetic) produce one per
`grab()` and the worker paces them at the configured fps.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"})
_NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
_DEVICE_PATH = re.compile(r"^/dev/video(\d+)$")


class SourceError(RuntimeError):
    """The source cannot be opened or read any more; the worker closes it and reconnects."""


class SourceExhausted(SourceError):
    """A replayed file or directory has no more frames and does not loop."""


class CorruptFrame(ValueError):
    """One unusable frame (undecodable, truncated, empty); counted and skipped."""


@dataclass(frozen=True)
class SourceOptions:
    """What a source needs from the camera config (see `CameraConfig`)."""

    loop: bool = True
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0

    @classmethod
    def from_camera(cls, camera: Any) -> SourceOptions:
        return cls(loop=camera.loop, open_timeout_s=camera.open_timeout_s, read_timeout_s=camera.read_timeout_s)


class FrameSource(ABC):
    """One camera or replay; used by a single thread at a time."""

    live: bool = False

    def __init__(self, uri: str) -> None:
        self.uri = uri

    @abstractmethod
    def open(self) -> None:
        """Open (or reopen) the source; raises `SourceError` naming the URI when that is impossible right now."""

    @abstractmethod
    def grab(self) -> bool:
        """Advance to the next frame without decoding it; False when none is available right now."""

    @abstractmethod
    def retrieve(self) -> Image:
        """Decode the grabbed frame; raises `CorruptFrame` when it is unusable."""

    def close(self) -> None:  # noqa: B027 - optional hook; most replay sources hold nothing open
        """Release the device/stream/file handle."""

    def read(self) -> Image | None:
        """`grab` then `retrieve`: the next frame, or None when there is none right now."""
        return self.retrieve() if self.grab() else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


# ----- OpenCV-backed sources ------------------------------------------------------------------------------------------
class OpenCVSource(FrameSource):
    """A `cv2.VideoCapture`: V4L2 devices, FFmpeg network streams, GStreamer pipelines."""

    live = True

    def __init__(self, uri: str, target: str | int, api: int, params: Sequence[int] = ()) -> None:
        super().__init__(uri)
        self._target = target
        self._api = api
        self._params = list(params)
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        self.close()
        cap = cv2.VideoCapture(self._target, self._api, self._params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.uri}: OpenCV could not open the source")
        self._cap = cap

    def grab(self) -> bool:
        if self._cap is None:
            raise SourceError(f"{self.uri}: grab() before open()")
        return bool(self._cap.grab())

    def retrieve(self) -> Image:
        if self._cap is None:
            raise SourceError(f"{self.uri}: retrieve() before open()")
        ok, image = self._cap.retrieve()
        if not ok or image is None or image.size == 0:
            raise CorruptFrame(f"{self.uri}: the grabbed frame could not be decoded")
        return np.asarray(image, dtype=np.uint8)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource(OpenCVSource):
    """A video file replayed frame by frame (paced by the worker), from the start again when `loop` is set."""

    live = False

    def __init__(self, uri: str, path: Path, loop: bool) -> None:
        super().__init__(uri, str(path), cv2.CAP_ANY)
        self._path = path
        self._loop = loop

    def open(self) -> None:
        if not self._path.is_file():
            raise SourceError(f"{self.uri}: video file {self._path} does not exist")
        super().open()

    def grab(self) -> bool:
        if super().grab():
            return True
        if not self._loop:
            raise SourceExhausted(f"{self.uri}: end of video and loop is off")
        self.open()  # rewinding by reopening works for every container, unlike seeking
        if not super().grab():
            raise SourceError(f"{self.uri}: video has no readable frame after rewinding")
        return True


def _network_params(options: SourceOptions) -> list[int]:
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(options.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(options.read_timeout_s * 1000),
    ]


def gstreamer_available() -> bool:
    """Whether this OpenCV build has the GStreamer video I/O backend."""
    match = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return match is not None and match.group(1).upper() != "NO"


# ----- replayed images ----------------------------------------------------------------------------------------------
class ImageFilesSource(FrameSource):
    """A directory of images (sorted by name, re-listed at each loop) or a single image file, replayed.

    Files are checked for a complete container (JPEG end marker, PNG IEND chunk) because decoders happily return a
    half-grey picture from a truncated file, which must count as corrupt rather than be inspected.
    """

    def __init__(self, uri: str, path: Path, loop: bool) -> None:
        super().__init__(uri)
        self._path = path
        self._loop = loop
        self._files: list[Path] = []
        self._next = 0
        self._current: Path | None = None

    def open(self) -> None:
        self._files = self._list_files()
        self._next = 0
        self._current = None

    def _list_files(self) -> list[Path]:
        if self._path.is_dir():
            try:
                entries = sorted(p for p in self._path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            except OSError as exc:
                raise SourceError(f"{self.uri}: cannot list directory {self._path}: {exc}") from exc
            return entries
        if self._path.is_file():
            return [self._path]
        raise SourceError(f"{self.uri}: {self._path} does not exist")

    def grab(self) -> bool:
        if self._next >= len(self._files):
            if not self._loop and self._files:
                raise SourceExhausted(f"{self.uri}: all {len(self._files)} images replayed and loop is off")
            self._files = self._list_files()
            self._next = 0
            if not self._files:
                return False  # empty directory: the no-frame timeout decides what happens
        self._current = self._files[self._next]
        self._next += 1
        return True

    def retrieve(self) -> Image:
        if self._current is None:
            raise SourceError(f"{self.uri}: retrieve() before a successful grab()")
        return self._decode(self._current)

    def _decode(self, file: Path) -> Image:
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            if not self._path.exists():
                raise SourceError(f"{self.uri}: {self._path} disappeared") from None
            raise CorruptFrame(f"{file}: vanished before it could be read") from None
        except OSError as exc:
            raise CorruptFrame(f"{file}: unreadable: {exc}") from exc
        return decode_image_bytes(data, str(file))


def decode_image_bytes(data: bytes, name: str) -> Image:
    """Decode an encoded image to BGR uint8; raises `CorruptFrame` naming `name` for empty/garbage/truncated data."""
    if not data:
        raise CorruptFrame(f"{name}: empty file")
    if data[:3] == b"\xff\xd8\xff" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise CorruptFrame(f"{name}: truncated JPEG (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-32:]:
        raise CorruptFrame(f"{name}: truncated PNG (no IEND chunk)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise CorruptFrame(f"{name}: not a decodable image ({len(data)} bytes)")
    return np.asarray(image, dtype=np.uint8)


# ----- synthetic ------------------------------------------------------------------------------------------------------
class SyntheticSource(FrameSource):
    """Deterministic defect frames from `agent.capture.synthetic`; never ends."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        from agent.capture.synthetic import SyntheticGenerator, parse_synthetic_uri

        self._generator = SyntheticGenerator(**parse_synthetic_uri(uri))
        self._index = -1

    def open(self) -> None:
        pass  # frame indices keep counting across reconnects: a reconnect must not replay old frames

    def grab(self) -> bool:
        self._index += 1
        return True

    def retrieve(self) -> Image:
        return self._generator.frame(max(self._index, 0)).image


# ----- URI dispatch ---------------------------------------------------------------------------------------------------
def open_source(uri: str, options: SourceOptions | None = None) -> FrameSource:
    """Build (but do not open) the source a URI names; raises ValueError naming a URI that names none."""
    options = options or SourceOptions()
    uri = uri.strip()
    if not uri:
        raise ValueError("source URI is empty")
    if uri.startswith("synthetic:"):
        return SyntheticSource(uri)
    if uri.startswith("gst:"):
        return _gstreamer_source(uri)
    if uri.lower().startswith(_NETWORK_SCHEMES):
        return OpenCVSource(uri, uri, cv2.CAP_FFMPEG, _network_params(options))
    device = _device_index(uri)
    if device is not None:
        return OpenCVSource(uri, device, cv2.CAP_V4L2 if os.name == "posix" else cv2.CAP_ANY)
    return _path_source(uri, options)


def _device_index(uri: str) -> int | None:
    if uri.isdigit():
        return int(uri)
    match = _DEVICE_PATH.match(uri)
    return int(match.group(1)) if match else None


def _gstreamer_source(uri: str) -> FrameSource:
    pipeline = uri[len("gst:"):].strip()
    if not pipeline:
        raise ValueError(f"{uri!r}: a gst: source needs a pipeline after 'gst:' (ending in appsink)")
    if not gstreamer_available():
        raise ValueError(
            f"{uri!r}: this OpenCV build has no GStreamer support (cv2.getBuildInformation() says GStreamer: NO); "
            "the pip opencv wheels never have it; use an OpenCV built with GStreamer (JetPack's, or built with "
            "-D WITH_GSTREAMER=ON), see docs/cameras.md"
        )
    return OpenCVSource(uri, pipeline, cv2.CAP_GSTREAMER)


def _path_source(uri: str, options: SourceOptions) -> FrameSource:
    if "://" in uri and not uri.startswith("file://"):
        raise ValueError(
            f"unsupported source URI {uri!r}: use a device index, /dev/videoN, rtsp://, http(s)://, gst:<pipeline>, "
            "genicam://<device>, a file or directory path, or synthetic:<params>"
        )
    path = Path(uri.removeprefix("file://")).expanduser()
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource(uri, path, options.loop)
    if path.suffix:
        return VideoFileSource(uri, path, options.loop)
    # no suffix and nothing there yet: a directory that will appear (e.g. a mount); opening checks again
    return ImageFilesSource(uri, path, options.loop)
