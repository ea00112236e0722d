"""Captured frames and the queue between the capture threads and the inference loop.

`FrameQueue` keeps at most `queue_size` frames per camera and evicts the oldest untriggered one when full (counted as
`dropped` by the camera's worker), so a slow detector costs frames, never memory, and capture never waits for it.
Cameras come and go while it runs (a reload adds, removes or restarts them): a removed camera's frames already
queued are still handed out, then its slot goes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from agent.capture.sources import Image
from agent.capture.triggers import Expectation


@dataclass(frozen=True)
class Frame:
    """One captured frame. `frame_id` counts up per camera (also across reconnects)."""

    camera: str
    frame_id: int
    captured_at: datetime
    image: Image
    part_id: str | None = None
    expect: Expectation | None = None  # what the line says the part is (a trigger's `expect`), if it says
    trigger: int | None = None  # the accepted trigger's ticket (TriggerQueue); such a frame is never evicted


class FrameQueue:
    """Frames from several cameras, at most `maxsize` per camera, oldest evicted first; safe across threads.

    A triggered frame is never evicted: a slot holding nothing else grows past `maxsize` (the camera's trigger queue
    bounds it), so an accepted part always reaches the detector.

    Readers take frames round-robin across cameras, so one fast camera cannot starve the others.
    """

    def __init__(self) -> None:
        self._frames: dict[str, deque[Frame]] = {}
        self._maxsize: dict[str, int] = {}
        self._cameras: list[str] = []
        self._next = 0  # round-robin position in `_cameras`
        self._leaving: set[str] = set()  # removed cameras whose slot still holds frames
        self._cond = threading.Condition()

    def add_camera(self, camera: str, maxsize: int) -> None:
        """A slot for `camera`; one still emptying after `remove_camera` is taken up again (its frames stay first)."""
        if maxsize < 1:
            raise ValueError(f"queue size {maxsize} for camera {camera!r}: must be at least 1")
        with self._cond:
            if camera in self._frames and camera not in self._leaving:
                raise ValueError(f"camera {camera!r} is already attached to this frame queue")
            if camera not in self._frames:
                self._frames[camera] = deque()
                self._cameras.append(camera)
            self._leaving.discard(camera)
            self._maxsize[camera] = maxsize

    def remove_camera(self, camera: str) -> None:
        """`camera` sends no more frames: its slot goes once the frames already in it are taken (none is lost)."""
        with self._cond:
            if camera in self._frames:
                self._leaving.add(camera)
                self._drop_if_drained(camera)

    def put(self, frame: Frame) -> Frame | None:
        """Queue a frame without ever blocking; returns the frame it evicted, if the camera's slot was full (or the
        frame itself when its camera was removed: a stopping worker's last frame)."""
        with self._cond:
            slot = self._frames.get(frame.camera)
            if slot is None or frame.camera in self._leaving:
                return frame
            evicted = None
            if len(slot) >= self._maxsize[frame.camera]:
                evicted = next((f for f in slot if f.trigger is None), None)  # the oldest untriggered frame
                if evicted is not None:
                    slot.remove(evicted)
            slot.append(frame)
            self._cond.notify()
            return evicted

    def get(self, timeout: float | None = None) -> Frame | None:
        """The next waiting frame, or None after `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(self._has_frames, timeout):
                return None
            return self._pop()

    def get_batch(self, max_frames: int, timeout: float | None, window_s: float) -> list[Frame]:
        """Up to `max_frames`: waits `timeout` for the first, then at most `window_s` more to fill the batch."""
        first = self.get(timeout)
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + window_s
        with self._cond:
            while len(batch) < max_frames:
                if not self._cond.wait_for(self._has_frames, max(0.0, deadline - time.monotonic())):
                    break
                batch.append(self._pop())
        return batch

    def depth(self) -> int:
        with self._cond:
            return sum(len(slot) for slot in self._frames.values())

    def _has_frames(self) -> bool:
        return any(self._frames.values())

    def _pop(self) -> Frame:
        for step in range(len(self._cameras)):
            index = (self._next + step) % len(self._cameras)
            slot = self._frames[self._cameras[index]]
            if slot:
                self._next = index + 1
                frame = slot.popleft()
                self._drop_if_drained(frame.camera)
                return frame
        raise LookupError("no frame waiting")  # callers hold the lock and checked _has_frames first

    def _drop_if_drained(self, camera: str) -> None:
        if camera in self._leaving and not self._frames[camera]:
            del self._frames[camera], self._maxsize[camera]
            self._cameras.remove(camera)
            self._leaving.discard(camera)
