"""One supervised capture thread per camera: open, read, pace, reconnect, count; never blocks on the consumer.

Frames go into a `FrameQueue` (agent/capture/frames.py) that keeps at most `queue_size` frames per camera and evicts
the oldest when full (counted as `dropped`), so a slow detector costs frames, never memory, and capture never waits
for it.

- `free-run`: every captured frame (at most `fps` per second) is offered to the queue.
- `trigger`: `trigger(part_id)` answers at once through the camera's `TriggerQueue` (agent/capture/triggers.py):
  accepted, busy or overflow. The first frame grabbed after an accepted trigger is tagged with its part and queued:
  one inspected frame per accepted trigger. A triggered frame is never evicted from the frame queue (the trigger
  queue bounds how many there are); only untriggered frames are dropped.

Supervision: a source that raises `SourceError`, or gives no usable frame for `no_frame_timeout_s`, is closed and
reopened with exponential backoff between `reconnect_min_s` and `reconnect_max_s`. The camera's status
(`online`/`offline`/`disabled`, and `retired` once a reload removed it) is reported to `on_status` whenever it
changes.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

import cv2
import numpy as np
import structlog

from agent.capture.frames import Frame, FrameQueue
from agent.capture.registry import create_source
from agent.capture.sources import (
    CorruptFrame,
    FrameSource,
    Image,
    SourceError,
    SourceExhausted,
)
from agent.capture.triggers import Answer, Expectation, StateCallback, TriggerQueue

CameraStatus = Literal["online", "offline", "disabled", "retired"]  # retired: removed from the config by a reload
_log = structlog.get_logger("agent.capture")
_POLL_S = 0.02  # how often an idle loop (no frame available) looks again and notices stop()
CORRUPT_LOG_INTERVAL_S = 10.0  # at most one "corrupt frame skipped" line per camera this often
__all__ = ["CameraState", "CaptureCounters", "CaptureWorker", "Frame", "FrameQueue", "acquire_timeout_s", "as_bgr"]


@dataclass
class CaptureCounters:
    """Totals since the worker started; read by metrics and the camera status message."""

    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    corrupt: int = 0
    open_failures: int = 0
    fps: float = 0.0  # measured output rate, smoothed

    def snapshot(self) -> dict[str, float]:
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CameraState:
    """What `on_status` receives: the new status, why, and the counters at that moment."""

    camera: str
    status: CameraStatus
    reason: str
    counters: dict[str, float] = field(default_factory=dict)


StatusCallback = Callable[[CameraState], None]


class CaptureWorker:
    """Supervises one camera's source in a daemon thread. Start with `start()`, stop with `stop()`."""

    def __init__(
        self,
        camera: Any,
        frames: FrameQueue | None = None,
        on_status: StatusCallback | None = None,
        source: FrameSource | None = None,
        on_trigger_state: StateCallback | None = None,
        previous: CaptureWorker | None = None,
    ) -> None:
        """`previous`: the stopped worker this one replaces (a camera a reload restarted or added back): frame ids and
        counters go on from it, and in trigger mode its trigger queue too (its parts in flight keep their outcome)."""
        self.cfg = camera
        self.name: str = camera.name
        self.frames = frames if frames is not None else FrameQueue()
        self.frames.add_camera(self.name, camera.queue_size)
        self.counters: CaptureCounters = replace(previous.counters, fps=0.0) if previous else CaptureCounters()
        self.status: CameraStatus | None = None
        self.reason = ""  # why the camera is in its status (shown by the station)
        self._on_status = on_status
        self._source = source if source is not None else create_source(camera)  # never raises: offline instead
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_frame_id: int = previous._next_frame_id if previous is not None else 0
        self._final: tuple[CameraStatus, str] = ("offline", "stopped")  # the status stop() leaves
        self._heartbeat = time.monotonic()
        self.triggers = self._trigger_queue(previous, on_trigger_state) if camera.mode == "trigger" else None
        self._last_emit: float | None = None
        self._corrupt_logged_at: float | None = None
        self._corrupt_logged_count = 0

    def _trigger_queue(self, previous: CaptureWorker | None, on_change: StateCallback | None) -> TriggerQueue:
        if previous is None or previous.triggers is None:
            return TriggerQueue(self.name, self.cfg.trigger_queue, acquire_timeout_s(self.cfg), on_change)
        previous.triggers.reconfigure(self.cfg.trigger_queue, acquire_timeout_s(self.cfg))
        return previous.triggers

    # ----- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.triggers is not None:
            self.triggers.announce()
        if not self.cfg.enabled:
            self._set_status("disabled", "camera disabled in config")
            return
        if self._thread is not None:
            raise RuntimeError(f"camera {self.name!r}: worker already started")
        self._thread = threading.Thread(target=self._supervise, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None, status: CameraStatus = "offline", reason: str = "stopped") -> None:
        """Ask the thread to finish and wait for it (an OpenCV open in progress may take up to its open timeout);
        the camera then reports `status` with `reason` (a thread still in a blocking call does so when it ends)."""
        self._final = (status, reason)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.cfg.open_timeout_s + 2.0)
        never_started = self._thread is None and status != "offline"  # a disabled camera stays "disabled" on shutdown
        if never_started or (self._thread is not None and not self._thread.is_alive()):
            self._set_status(status, reason)  # (a loop that ended by itself, e.g. its file source finished, said why)

    def loop_alive(self, max_age_s: float) -> bool:
        """For the watchdog: the thread runs and went round its loop within `max_age_s` (disabled: always true)."""
        if not self.cfg.enabled or self._stop.is_set():
            return True
        alive = self._thread is not None and self._thread.is_alive()
        return alive and time.monotonic() - self._heartbeat <= max_age_s

    # ----- trigger mode -------------------------------------------------------------------------------------------
    def trigger(self, part_id: str | None, expect: Expectation | None = None) -> Answer:
        """Accept the part (its frame: the first grabbed from now on) or refuse it as busy/overflow; never waits."""
        if self.triggers is None:
            raise RuntimeError(f"camera {self.name!r} runs in {self.cfg.mode!r} mode, not 'trigger'")
        return self.triggers.offer(part_id, expect, time.monotonic())

    # ----- the supervised loop ------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        backoff = self.cfg.reconnect_min_s
        opened_before = False
        while not self._stop.is_set():
            self._beat()
            try:
                self._source.open()
            except SourceError as exc:
                opened_before = True
                self.counters.open_failures += 1
                self._set_status("offline", f"open failed: {exc}")
                backoff = self._sleep_backoff(backoff)
                continue
            if opened_before:
                self.counters.reconnects += 1
            opened_before = True
            frames_before = self.counters.frames
            try:
                reason = self._pump()
            except SourceExhausted as exc:
                self._finish(str(exc))
                return
            except SourceError as exc:
                reason = f"source error: {exc}"
            except Exception as exc:  # a bug in a source must not kill the camera for good
                _log.exception("capture loop crashed", camera=self.name)
                reason = f"unexpected {type(exc).__name__}: {exc}"
            if not self._stop.is_set():
                self._set_status("offline", reason)  # before closing: closing a vanished GigE camera blocks seconds
            self._close_source()
            if self._stop.is_set():
                break
            if self.counters.frames > frames_before:
                backoff = self.cfg.reconnect_min_s  # it worked for a while: start backing off from scratch
            backoff = self._sleep_backoff(backoff)
        self._close_source()
        self._set_status(*self._final)

    def _pump(self) -> str:
        """Read frames until the source fails, stays silent too long, or stop(); returns why it ended."""
        period = 1.0 / self.cfg.fps
        next_due = time.monotonic()
        last_good = time.monotonic()
        while not self._stop.is_set():
            self._beat()
            if not self._source.live and self._stop.wait(max(0.0, next_due - time.monotonic())):
                break
            got = self._source.grab()
            now = time.monotonic()
            if not got:
                if now - last_good > self.cfg.no_frame_timeout_s:
                    return f"no frame for {self.cfg.no_frame_timeout_s:g} s"
                self._stop.wait(min(_POLL_S, period))
                continue
            if self._source.live and now < next_due:
                continue  # a live camera runs faster than fps: drop the undecoded frame, keep the driver drained
            image = self._retrieve()
            if image is None:
                if now - last_good > self.cfg.no_frame_timeout_s:
                    return f"only corrupt frames for {self.cfg.no_frame_timeout_s:g} s"
                continue
            last_good = now
            next_due = next_due + period if now - next_due < period else now + period  # no catch-up bursts
            self._emit(image, grabbed_at=now)
        return "stopped"

    def _retrieve(self) -> Image | None:
        try:
            return as_bgr(self._source.retrieve())
        except CorruptFrame as exc:
            self.counters.corrupt += 1
            self._log_corrupt(str(exc))
            return None

    def _log_corrupt(self, error: str) -> None:
        """The first corrupt frame at once, then one line per `CORRUPT_LOG_INTERVAL_S` with the count since: a camera
        sending nothing but garbage at 30 fps must not flood the journal (the `corrupt` counter has every frame)."""
        now = time.monotonic()
        if self._corrupt_logged_at is not None and now - self._corrupt_logged_at < CORRUPT_LOG_INTERVAL_S:
            return
        _log.warning("corrupt frame skipped", camera=self.name, error=error, corrupt=self.counters.corrupt,
                     since_last_log=self.counters.corrupt - self._corrupt_logged_count)
        self._corrupt_logged_at, self._corrupt_logged_count = now, self.counters.corrupt

    def _emit(self, image: Image, grabbed_at: float) -> None:
        frame = Frame(self.name, self._next_frame_id, datetime.now(timezone.utc), image)
        self._next_frame_id += 1
        self.counters.frames += 1
        self._measure_fps()
        self._last_emit = time.monotonic()
        self._set_status("online", "frames arriving")
        if self.triggers is None:
            self._enqueue(frame)
        elif (part := self.triggers.claim(frame.frame_id, grabbed_at)) is not None:
            self._enqueue(replace(frame, part_id=part.part_id, expect=part.expect, trigger=part.ticket))

    def _enqueue(self, frame: Frame) -> None:
        if self.frames.put(frame) is not None:
            self.counters.dropped += 1

    def _measure_fps(self) -> None:
        now = time.monotonic()
        if self._last_emit is not None and now > self._last_emit:
            rate = 1.0 / (now - self._last_emit)
            self.counters.fps = rate if self.counters.fps == 0 else 0.9 * self.counters.fps + 0.1 * rate

    # ----- helpers ------------------------------------------------------------------------------------------------
    def _sleep_backoff(self, delay: float) -> float:
        """Wait `delay` (with jitter, interruptible by stop) and return the next, doubled, delay."""
        self.counters.fps = 0.0
        self._stop.wait(delay * random.uniform(0.8, 1.0))  # jitter keeps many cameras from reconnecting in step
        return min(delay * 2.0, self.cfg.reconnect_max_s)

    def _close_source(self) -> None:
        try:
            self._source.close()
        except Exception:
            _log.exception("closing the source failed", camera=self.name)

    def _finish(self, reason: str) -> None:
        self._close_source()
        _log.info("source finished", camera=self.name, reason=reason)
        self._set_status("offline", reason)

    def _beat(self) -> None:
        self._heartbeat = time.monotonic()

    def _set_status(self, status: CameraStatus, reason: str) -> None:
        if status == self.status:
            return
        self.status, self.reason = status, reason
        if self.triggers is not None:
            self.triggers.set_online(status == "online")
        _log.info("camera status", camera=self.name, status=status, reason=reason, **self.counters.snapshot())
        if self._on_status is None:
            return
        try:
            self._on_status(CameraState(self.name, status, reason, self.counters.snapshot()))
        except Exception:  # the publisher's problem must not stop capture
            _log.exception("camera status callback failed", camera=self.name)


def acquire_timeout_s(camera: Any) -> float:
    """How long an accepted trigger waits for its frame before it fails: two frame periods plus one read."""
    return float(2.0 / camera.fps + camera.read_timeout_s)


def as_bgr(image: Any) -> Image:
    """A 3-channel BGR uint8 image from what a source returned; `CorruptFrame` for anything that is not a picture."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise CorruptFrame(f"empty or missing frame ({type(image).__name__})")
    if image.dtype != np.uint8:
        raise CorruptFrame(f"frame has dtype {image.dtype}, expected uint8")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise CorruptFrame(f"frame has shape {image.shape}, expected HxW, HxWx3 or HxWx4")
