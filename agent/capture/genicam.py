"""GenICam cameras (GigE Vision, USB3 Vision) through Aravis: `genicam://<device id or IP address>`.

Why Aravis (through PyGObject) rather than Harvesters or pypylon: it is vendor-neutral (Basler, FLIR, Allied Vision,
line-scan cameras alike, no vendor GenTL producer to license or download), it is packaged by Debian and Ubuntu, so
JetPack boxes get it with `apt install gir1.2-aravis-0.8`, and its `arv-fake-gv-camera-0.8` speaks the real GigE
Vision protocol (GVCP control, GVSP stream) on loopback, which is what the tests drive. pypylon is Basler's SDK and
its emulation is not a network protocol endpoint. See docs/cameras.md for install, URI and settings.

The camera is configured from the camera's `genicam` section at every (re)open: pixel format, exposure, gain and
trigger (`free-run`, `software`: one exposure per frame the worker asks for, or `hardware` on an I/O line).
With `line_scan`, each grabbed buffer is a strip of one or more lines, stitched into frames of `lines_per_frame`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import cv2
import numpy as np

from agent.capture.sources import CorruptFrame, FrameSource, Image, SourceError

SCHEME = "genicam://"
_POLL_US = 200_000  # one grab waits at most this long for a buffer, so stop() is noticed quickly
_BUFFERS = 8  # stream buffers queued at the driver: enough for a short stall of the consumer
# GenICam pixel format name -> OpenCV conversion to BGR. GenICam names the Bayer tile from its top-left pixel, as
# OpenCV's BayerRGGB-style aliases do (the older BayerRG2BGR names are shifted by one pixel).
_TO_BGR: dict[str, int | None] = {
    "Mono8": cv2.COLOR_GRAY2BGR, "Mono16": cv2.COLOR_GRAY2BGR,
    "RGB8": cv2.COLOR_RGB2BGR, "BGR8": None,
    "BayerRG8": cv2.COLOR_BayerRGGB2BGR, "BayerGR8": cv2.COLOR_BayerGRBG2BGR,
    "BayerGB8": cv2.COLOR_BayerGBRG2BGR, "BayerBG8": cv2.COLOR_BayerBGGR2BGR,
}
PIXEL_FORMATS = tuple(_TO_BGR)
RawBuffer = tuple[bytes, int, int]  # a buffer's bytes, width, height


def load_aravis() -> Any:
    """The Aravis GObject module; raises ImportError saying what to install when it is missing."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:  # no PyGObject, or no Aravis typelib
        raise ImportError(
            f"GenICam cameras need Aravis 0.8 and PyGObject ({exc}): apt install gir1.2-aravis-0.8 and "
            "pip install 'edge-inspect[genicam]' (see docs/cameras.md)"
        ) from None
    return Aravis


def device_id_of(uri: str) -> str:
    """The device id or address after `genicam://`; ValueError when there is none."""
    device = uri.strip()[len(SCHEME):].strip().rstrip("/")
    if not device:
        raise ValueError(
            f"{uri!r}: a genicam:// source needs a device id (as arv-tool-0.8 lists it) or an IP address after it"
        )
    return device


class LineStitcher:
    """Collects strips of lines (a line-scan camera's buffers) into frames of exactly `lines_per_frame` lines."""

    def __init__(self, lines_per_frame: int) -> None:
        self.lines_per_frame = lines_per_frame
        self._strips: list[Image] = []
        self._lines = 0

    def add(self, strip: Image) -> Image | None:
        """Add one strip; returns a complete frame when enough lines arrived (the rest starts the next frame)."""
        if self._strips and strip.shape[1:] != self._strips[0].shape[1:]:
            self.reset()  # width or format changed under us: a frame mixing both would be garbage
        self._strips.append(strip)
        self._lines += strip.shape[0]
        if self._lines < self.lines_per_frame:
            return None
        stacked = np.concatenate(self._strips, axis=0)
        frame, rest = stacked[: self.lines_per_frame], stacked[self.lines_per_frame:]
        self._strips, self._lines = ([rest], len(rest)) if len(rest) else ([], 0)
        return frame

    def reset(self) -> None:
        self._strips, self._lines = [], 0


def to_bgr(data: bytes, width: int, height: int, pixel_format: str) -> Image:
    """One buffer's bytes as a BGR uint8 image; `CorruptFrame` for a short buffer or an unsupported format."""
    if pixel_format not in _TO_BGR:
        raise CorruptFrame(f"pixel format {pixel_format} is not supported (use one of {', '.join(PIXEL_FORMATS)})")
    wide = pixel_format == "Mono16"
    channels = 3 if pixel_format in ("RGB8", "BGR8") else 1
    needed = width * height * channels * (2 if wide else 1)
    if width <= 0 or height <= 0 or len(data) < needed:
        raise CorruptFrame(f"short buffer: {len(data)} bytes for {width}x{height} {pixel_format}")
    pixels = np.frombuffer(data[:needed], dtype=np.uint16 if wide else np.uint8)
    if wide:
        pixels = (pixels >> 8).astype(np.uint8)  # keep the 8 most significant bits: the detector works on 8 bits
    image = pixels.reshape((height, width, channels) if channels == 3 else (height, width))
    code = _TO_BGR[pixel_format]
    return np.asarray(image if code is None else cv2.cvtColor(image, code), dtype=np.uint8)


class GenICamSource(FrameSource):
    """One GenICam camera through Aravis. `settings` is the camera's `genicam` config section (or None)."""

    def __init__(self, uri: str, settings: Any, read_timeout_s: float = 5.0) -> None:
        super().__init__(uri)
        self._read_timeout_s = read_timeout_s
        self._triggered_at: float | None = None
        self._device = device_id_of(uri)
        self._settings = settings
        self._aravis: Any = None
        self._camera: Any = None
        self._stream: Any = None
        self._format = "Mono8"
        self._raw: RawBuffer | None = None
        self._frame: Image | None = None
        self._error: CorruptFrame | None = None
        line_scan = getattr(settings, "line_scan", None)
        self._stitcher = LineStitcher(line_scan.lines_per_frame) if line_scan is not None else None
        # software trigger: the camera exposes once per grab, so the worker's fps pacing decides the frame rate
        self.live = getattr(settings, "trigger", "free-run") != "software"

    def open(self) -> None:
        self.close()
        try:
            self._aravis = load_aravis()
        except ImportError as exc:
            raise SourceError(f"{self.uri}: {exc}") from None
        try:
            self._camera = self._aravis.Camera.new(self._device)
            self._configure(self._camera)
            self._format = self._camera.get_pixel_format_as_string()
            self._stream = self._start_stream(self._camera)
        except Exception as exc:  # GLib.Error from Aravis: no such camera, feature refused, stream failure
            self.close()
            raise SourceError(f"{self.uri}: {_message(exc)}") from None

    def _configure(self, camera: Any) -> None:
        """Apply the config's settings to the camera; each one only when it is set (else the camera keeps its own)."""
        s = self._settings
        if s is None:
            return
        if s.pixel_format is not None:
            camera.set_pixel_format_from_string(s.pixel_format)
        if s.line_scan is not None and s.line_scan.lines_per_buffer is not None:
            x, y, width, _ = camera.get_region()
            camera.set_region(x, y, width, s.line_scan.lines_per_buffer)
        if s.exposure_us is not None:
            if camera.is_exposure_auto_available():  # auto exposure would overwrite the configured time
                camera.set_exposure_time_auto(self._aravis.Auto.OFF)
            camera.set_exposure_time(s.exposure_us)
        if s.gain_db is not None:
            if camera.is_gain_auto_available():
                camera.set_gain_auto(self._aravis.Auto.OFF)
            camera.set_gain(s.gain_db)
        if s.trigger == "free-run":
            camera.clear_triggers()
        else:
            camera.set_trigger("Software" if s.trigger == "software" else s.trigger_line)

    def _start_stream(self, camera: Any) -> Any:
        camera.set_acquisition_mode(self._aravis.AcquisitionMode.CONTINUOUS)
        stream = camera.create_stream(None, None)
        payload = camera.get_payload()
        for _ in range(_BUFFERS):
            stream.push_buffer(self._aravis.Buffer.new_allocate(payload))
        camera.start_acquisition()
        return stream

    def grab(self) -> bool:
        if self._camera is None or self._stream is None:
            raise SourceError(f"{self.uri}: grab() before open()")
        self._raw = self._frame = self._error = None
        try:
            if self._stitcher is None:
                self._raw = self._next_buffer()  # converted in retrieve(): a frame the worker drops costs no debayer
            else:
                self._frame = self._next_stitched(self._stitcher)
        except CorruptFrame as exc:  # reported by retrieve(), where the worker counts and skips corrupt frames
            self._error = exc
            if self._stitcher is not None:
                self._stitcher.reset()  # a frame with a hole in it must not be inspected
        return self._raw is not None or self._frame is not None or self._error is not None

    def _next_stitched(self, stitcher: LineStitcher) -> Image | None:
        """Strips until a line-scan frame is full, or None when no strip came within the poll time."""
        while True:
            raw = self._next_buffer()
            if raw is None:
                return None
            frame = stitcher.add(to_bgr(*raw, self._format))
            if frame is not None:
                return frame

    def _next_buffer(self) -> RawBuffer | None:
        """The next complete buffer's bytes and size (None when none came in time); the buffer goes back at once."""
        if not self.live:
            self._fire_trigger()
        buffer = self._stream.timeout_pop_buffer(_POLL_US)
        if buffer is None:
            return None
        self._triggered_at = None
        try:
            if buffer.get_status() != self._aravis.BufferStatus.SUCCESS:
                raise CorruptFrame(f"{self.uri}: incomplete buffer ({buffer.get_status().value_nick})")
            return buffer.get_data(), buffer.get_image_width(), buffer.get_image_height()
        finally:
            self._stream.push_buffer(buffer)

    def _fire_trigger(self) -> None:
        """One software trigger per frame: not again while an exposure is under way (a long exposure outlasts one
        poll, and a camera ignores or queues triggers while busy), unless it went unanswered for `read_timeout_s`."""
        now = time.monotonic()
        if self._triggered_at is None or now - self._triggered_at > self._read_timeout_s:
            self._camera.software_trigger()
            self._triggered_at = now

    def retrieve(self) -> Image:
        if self._error is not None:
            raise self._error
        if self._raw is not None:
            return to_bgr(*self._raw, self._format)
        if self._frame is None:
            raise SourceError(f"{self.uri}: retrieve() before a successful grab()")
        return self._frame

    def close(self) -> None:
        if self._camera is not None:
            with contextlib.suppress(Exception):  # the camera may already be gone; dropping it is all that is left
                self._camera.stop_acquisition()
        self._camera = self._stream = self._raw = self._frame = self._triggered_at = None
        if self._stitcher is not None:
            self._stitcher.reset()


def _message(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc)


def create_genicam_source(uri: str, camera: Any) -> GenICamSource:
    """The registry's factory: a `genicam://` URI with the camera config's `genicam` section."""
    return GenICamSource(uri, getattr(camera, "genicam", None), camera.read_timeout_s)
