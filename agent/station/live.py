"""The live board: what the live page shows of every camera.

The daemon's results stage calls `update()` for every inspected frame. That call only swaps references under a
short lock (no copy, no encoding), so the line never waits for a browser. Of those frames, at most
`max_show_hz` a second become the camera's *shown* frame: the one whose verdict and boxes the page prints and whose
JPEG it displays, so picture and text always belong to the same frame. A shown frame is JPEG-encoded once, lazily,
in the server's threads when a page first asks for it. The image array handed to `update()` must not be modified
afterwards (the pipeline never does: frames are immutable once captured).
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.annotate import draw_detections
from agent.detections import Detections
from agent.station.audit import rfc3339_utc

Image = npt.NDArray[np.uint8]
FPS_WINDOW = 64  # inspected-frame timestamps kept per camera to measure its rate
FPS_STALE_S = 5.0  # no frame for this long: the camera's rate reads 0
SHOWN_KEPT = 3  # the last shown frames stay fetchable by seq, so a page gets the frame its text describes
MAX_WIDTH = 1280  # wider frames are scaled down for the browser
THUMB_WIDTH = 240  # recent frames travel inside the recent list at this width (one request for the whole strip)
JPEG_QUALITY = 80
RECENT_VERDICTS = ("fail", "uncertain")
# On a fast line the newest recent frame the page is told about changes at most this often: each change makes the
# page fetch the recent list and every thumbnail it does not hold (one JPEG encode each), which at 25 frames/s of
# fail/uncertain frames was 8 thumbnails a second and most of the station's CPU (bench.pipeline --station-compare).
RECENT_REFRESH_S = 2.0


@dataclass
class _Shot:
    """One inspected frame; `jpeg` is filled the first time someone asks for it, then the raw image is let go."""

    frame_id: int
    captured_at: datetime
    verdict: str
    detections: Detections
    image: Image | None
    jpeg: bytes | None = None
    thumbnail: str | None = None  # a data: URI, made on first use

    def describe(self) -> dict[str, Any]:
        return {"frame_id": self.frame_id, "captured_at": rfc3339_utc(self.captured_at), "verdict": self.verdict,
                "image_size": list(self.detections.image_size), "boxes": self.detections.to_json()}


@dataclass
class _Camera:
    recent_size: int
    seq: int = 0  # frames recorded
    latest: _Shot | None = None
    shown_seq: int = 0  # the seq of the shown frame (0: none yet)
    shown_at: float = float("-inf")
    shown: deque[tuple[int, _Shot]] = field(default_factory=lambda: deque(maxlen=SHOWN_KEPT))
    counts: dict[str, int] = field(default_factory=lambda: {"pass": 0, "fail": 0, "uncertain": 0})
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    encode_lock: threading.Lock = field(default_factory=threading.Lock)
    recent: deque[tuple[int, _Shot]] = field(init=False)
    recent_ids: int = 0
    announced_recent: int | None = None  # the newest recent id the page was last told about
    announced_at: float = float("-inf")

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.recent_size)


class LiveBoard:
    """Per camera: the shown frame with its boxes and verdict, the inspected-frame rate, verdict counters, and
    the last `recent` fail/uncertain frames. Thread-safe."""

    def __init__(self, recent: int = 8, max_show_hz: float = 4.0, clock: Callable[[], float] = time.monotonic):
        self.recent_size = recent
        self.min_show_interval_s = 1.0 / max_show_hz
        self._clock = clock
        self._cameras: dict[str, _Camera] = {}
        self._lock = threading.Lock()

    # ----- the daemon's side ------------------------------------------------------------------------------------------
    def update(self, camera: str, image: Image, detections: Detections, verdict: str, frame_id: int,
               captured_at: datetime) -> None:
        """Record an inspected frame; never blocks on encoding or on viewers."""
        with self._lock:
            cam = self._cameras.get(camera)
            if cam is None:
                cam = self._cameras[camera] = _Camera(self.recent_size)
            cam.seq += 1
            cam.latest = _Shot(frame_id, captured_at, verdict, detections, image)
            cam.counts[verdict] = cam.counts.get(verdict, 0) + 1
            cam.arrivals.append(self._clock())
            if verdict in RECENT_VERDICTS and self.recent_size:
                cam.recent_ids += 1
                cam.recent.append((cam.recent_ids, _Shot(frame_id, captured_at, verdict, detections, image)))
            self._advance_shown(cam)

    def forget(self, camera: str) -> None:
        """A camera a reload removed: the live page no longer shows it."""
        with self._lock:
            self._cameras.pop(camera, None)

    def set_recent(self, recent: int) -> None:
        """Keep `recent` fail/uncertain frames per camera from now on (a reload; the newest already kept stay)."""
        with self._lock:
            self.recent_size = recent
            for cam in self._cameras.values():
                cam.recent_size, cam.recent = recent, deque(cam.recent, maxlen=recent)

    # ----- the viewers' side ------------------------------------------------------------------------------------------
    def cameras(self) -> list[str]:
        with self._lock:
            return list(self._cameras)

    def seq(self, camera: str) -> int:
        """The seq of the camera's shown frame: a cheap 'has the picture changed' for the live stream."""
        with self._lock:
            cam = self._cameras.get(camera)
            if cam is None:
                return 0
            self._advance_shown(cam)
            return cam.shown_seq

    def state(self, camera: str) -> dict[str, Any] | None:
        """The shown frame (no pixels) under its `seq`, the camera's rate and counters, its newest recent frame."""
        with self._lock:
            cam = self._cameras.get(camera)
            if cam is None or not cam.shown:
                return None
            self._advance_shown(cam)  # (the first update always makes a shown frame)
            seq, shot = cam.shown[-1]
            counts, fps = dict(cam.counts), self._fps(cam.arrivals)
            newest_recent = self._announce_recent(cam)
        return {"seq": seq, **shot.describe(), "fps": round(fps, 2), "counts": counts, "newest_recent": newest_recent}

    def jpeg(self, camera: str, seq: int | None = None) -> bytes | None:
        """Shown frame `seq` (or, when it is gone or not given, the current one) with its boxes drawn, as JPEG.
        None while the camera has no frame."""
        with self._lock:
            cam = self._cameras.get(camera)
            if cam is None or not cam.shown:
                return None
            self._advance_shown(cam)
            shot = next((s for n, s in cam.shown if n == seq), cam.shown[-1][1])
        return self._encoded(cam, shot)

    def jpeg_uri(self, camera: str, seq: int) -> str | None:
        """Shown frame `seq` as `jpeg`, as a data: URI: the live stream carries the picture with its description,
        so a live page costs the station no request per frame."""
        data = self.jpeg(camera, seq)
        return None if data is None else "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")

    def recent(self, camera: str, thumbnails: bool = False) -> list[dict[str, Any]]:
        """The camera's last fail/uncertain frames, newest first; with `thumbnails`, each carries a small JPEG
        with its boxes as a data: URI (the page then needs one request for the whole strip, not one per frame)."""
        with self._lock:
            cam = self._cameras.get(camera)
            items = list(cam.recent) if cam is not None else []
        views = []
        for ident, shot in reversed(items):
            view = {"id": ident, **shot.describe()}
            if thumbnails and cam is not None:
                view["thumbnail"] = self._thumbnail(cam, shot)
            views.append(view)
        return views

    def recent_jpeg(self, camera: str, ident: int) -> bytes | None:
        """One recent frame with its boxes drawn, as JPEG."""
        with self._lock:
            cam = self._cameras.get(camera)
            shot = next((s for i, s in cam.recent if i == ident), None) if cam is not None else None
        return self._encoded(cam, shot) if cam is not None and shot is not None else None

    # ----- internals --------------------------------------------------------------------------------------------------
    def _advance_shown(self, cam: _Camera) -> None:
        """Make the latest frame the shown one when it is newer and the last change is old enough (lock held)."""
        now = self._clock()
        if cam.latest is not None and cam.shown_seq != cam.seq and now - cam.shown_at >= self.min_show_interval_s:
            cam.shown.append((cam.seq, cam.latest))
            cam.shown_seq, cam.shown_at = cam.seq, now

    def _announce_recent(self, cam: _Camera) -> int | None:
        """The newest recent frame's id as the page may learn it (lock held): the true one when the shown frame is
        the camera's latest (a slow or stopped line: nothing is held back) or RECENT_REFRESH_S have passed since the
        last change, else the one announced before."""
        newest = cam.recent[-1][0] if cam.recent else None
        now = self._clock()
        if newest != cam.announced_recent and (cam.shown_seq == cam.seq or now - cam.announced_at >= RECENT_REFRESH_S):
            cam.announced_recent, cam.announced_at = newest, now
        return cam.announced_recent

    @staticmethod
    def _encoded(cam: _Camera, shot: _Shot) -> bytes | None:
        """The shot's JPEG, encoded on first use (one encode per camera at a time); the raw image is then let go."""
        with cam.encode_lock:
            if shot.jpeg is None and shot.image is not None:
                shot.jpeg = encode_annotated(shot.image, shot.detections)
                shot.image = None
            return shot.jpeg

    @staticmethod
    def _thumbnail(cam: _Camera, shot: _Shot) -> str | None:
        """The shot's thumbnail as a data: URI, encoded once; from the full JPEG when the raw image is gone."""
        with cam.encode_lock:
            if shot.thumbnail is None:
                image = shot.image if shot.image is not None else decoded(shot.jpeg)
                if image is None:
                    return None
                data = encode_annotated(image, shot.detections if shot.image is not None else None, THUMB_WIDTH)
                shot.thumbnail = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
            return shot.thumbnail

    def _fps(self, arrivals: deque[float]) -> float:
        if len(arrivals) < 2 or self._clock() - arrivals[-1] > FPS_STALE_S:
            return 0.0
        span = arrivals[-1] - arrivals[0]
        return (len(arrivals) - 1) / span if span > 0 else 0.0


def encode_annotated(image: Image, detections: Detections | None, max_width: int = MAX_WIDTH) -> bytes:
    """`image` with `detections` drawn (None: already drawn), scaled to at most `max_width` wide, as JPEG bytes."""
    drawn = draw_detections(image, detections) if detections is not None else image
    height, width = drawn.shape[:2]
    ok, data = cv2.imencode(".jpg", shrunk(drawn, max_width), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"could not encode a {width}x{height} frame as JPEG")
    return data.tobytes()


def shrunk(image: Image, max_width: int) -> Image:
    """`image` scaled to at most `max_width` wide: halved by Gaussian pyramid steps while that stays wide enough,
    then bilinear. Anti-aliased like INTER_AREA (thin box lines survive), at a fifth of its CPU on this box (a
    256 -> 240 px thumbnail took 0.55 ms with INTER_AREA, 0.09 ms this way; the station's CPU is the line's)."""
    while image.shape[1] >= 2 * max_width:
        image = np.asarray(cv2.pyrDown(image), dtype=np.uint8)
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    size = (max_width, max(1, round(height * max_width / width)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def decoded(jpeg: bytes | None) -> Image | None:
    """A JPEG back to pixels (boxes already drawn in), None when there is none or it does not decode."""
    if jpeg is None:
        return None
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)
