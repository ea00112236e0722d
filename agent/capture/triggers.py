"""Trigger mode's handshake with the line: a bounded per-camera queue of parts in flight, never a silent drop.

A trigger is answered at once, without waiting for the camera:

- `accepted` (with its `position`: 1 + the parts ahead of it): the next frame captured after the trigger is this
  part's, and the part stays in flight until its result is published or it fails (`TriggerQueue.finish`/`fail`).
- `busy`: the camera is not online, or an accepted part still waits for its frame. One acquisition at a time: a
  second trigger in the same frame period would get a frame taken later, after its part has moved on.
- `overflow`: `capacity` parts are in flight already (the detector or the broker is behind).

Refused triggers capture nothing; the line retries or knows the part was not inspected. `HandshakeState` is what
the line sees (retained on `cameras/{camera}/handshake`); `on_change` receives it after every change, under the
queue's lock so that states reach the callback in the order they happened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog

Expectation = Literal["pass", "fail"]
Admission = Literal["accepted", "busy", "overflow"]
_log = structlog.get_logger("agent.capture")


@dataclass
class Part:
    """One accepted trigger. `ticket` counts up per camera and names the part even without a `part_id`."""

    camera: str
    ticket: int
    part_id: str | None
    expect: Expectation | None
    accepted_at: float  # monotonic
    frame_id: int | None = None  # once captured


@dataclass(frozen=True)
class Answer:
    """What `offer` decided: `accepted` carries the part and its position, a refusal its reason."""

    status: Admission
    part: Part | None = None
    position: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class HandshakeState:
    camera: str
    ready: bool  # a trigger now would be accepted: camera online, nothing acquiring, room in the queue
    busy: bool  # at least one accepted part has no published result yet
    acquiring: bool  # an accepted part waits for its frame
    results_pending: int  # accepted parts without a published result (or a failure)
    capacity: int
    last_part_id: str | None  # of the last accepted trigger
    counters: dict[str, int] = field(default_factory=dict)  # accepted, busy, overflow, results, failed


StateCallback = Callable[[HandshakeState], None]


class TriggerQueue:
    """The parts in flight of one camera in trigger mode; safe across the command, capture and results threads."""

    def __init__(self, camera: str, capacity: int, acquire_timeout_s: float,
                 on_change: StateCallback | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"trigger queue of camera {camera!r}: capacity {capacity} must be at least 1")
        self.camera, self.capacity, self.acquire_timeout_s = camera, capacity, acquire_timeout_s
        self.on_change = on_change
        self._parts: dict[int, Part] = {}  # ticket -> part, in acceptance order
        self._next_ticket = 1
        self._online = False
        self._lost: list[tuple[Part, str]] = []  # failed by set_online, not yet returned by expire
        self._last_part_id: str | None = None
        self._counters = {"accepted": 0, "busy": 0, "overflow": 0, "results": 0, "failed": 0}
        self._lock = threading.Lock()

    def offer(self, part_id: str | None, expect: Expectation | None, now: float) -> Answer:
        """Accept a trigger that arrived at `now` (monotonic), or refuse it with `busy`/`overflow` and why."""
        with self._lock:
            answer = self._admit(part_id, expect, now)
            self._counters[answer.status] += 1
            self._changed()
            return answer

    def _admit(self, part_id: str | None, expect: Expectation | None, now: float) -> Answer:
        if not self._online:
            return Answer("busy", reason=f"camera {self.camera!r} is not online")
        waiting = self._waiting()
        if waiting is not None:
            return Answer("busy", reason=f"camera {self.camera!r} is still acquiring part {_name(waiting)}")
        if len(self._parts) >= self.capacity:
            return Answer("overflow", reason=f"{len(self._parts)} parts in flight on camera {self.camera!r} "
                          f"(trigger_queue {self.capacity})")
        part = Part(self.camera, self._next_ticket, part_id, expect, now)
        self._next_ticket += 1
        self._parts[part.ticket] = part
        self._last_part_id = part_id
        return Answer("accepted", part, position=len(self._parts))

    def claim(self, frame_id: int, grabbed_at: float) -> Part | None:
        """The capture thread's frame `frame_id`, grabbed at `grabbed_at`: the waiting part it belongs to, if any."""
        with self._lock:
            part = self._waiting()
            if part is None or part.accepted_at > grabbed_at:
                return None  # no trigger, or the frame was grabbed before the trigger arrived
            part.frame_id = frame_id
            self._changed()
            return part

    def find(self, ticket: int) -> Part | None:
        """The part in flight under `ticket`, or None."""
        with self._lock:
            return self._parts.get(ticket)

    def finish(self, ticket: int) -> Part | None:
        """The part's result is published: it leaves the queue. None when the ticket is not (any more) in flight."""
        return self._remove(ticket, "results")

    def fail(self, ticket: int) -> Part | None:
        """The part will get no result (no frame, refused by the detector or the outbox): it leaves the queue."""
        return self._remove(ticket, "failed")

    def expire(self, now: float) -> list[tuple[Part, str]]:
        """Parts that lost their camera, or waited longer than `acquire_timeout_s`, before their frame: they leave
        the queue as failed, each with why."""
        with self._lock:
            late = [(p, f"no frame within {self.acquire_timeout_s:g} s") for p in self._parts.values()
                    if p.frame_id is None and now - p.accepted_at > self.acquire_timeout_s]
            for part, _reason in late:
                self._drop(part)
            lost, self._lost = self._lost, []
            if late:
                self._changed()
            return lost + late

    def set_online(self, online: bool) -> None:
        """The camera's status changed. A part waiting for its frame when the camera goes offline has lost it: a
        frame after the reconnect would show whatever is in front of the camera by then."""
        with self._lock:
            if online == self._online:
                return
            self._online = online
            waiting = self._waiting()
            if not online and waiting is not None:
                self._drop(waiting)
                self._lost.append((waiting, "the camera went offline before its frame"))
            self._changed()

    def reconfigure(self, capacity: int, acquire_timeout_s: float) -> None:
        """New limits from a reload that restarted the camera; the parts in flight, tickets and counters go on (a
        capacity below the parts in flight refuses triggers as `overflow` until enough have finished)."""
        if capacity < 1:
            raise ValueError(f"trigger queue of camera {self.camera!r}: capacity {capacity} must be at least 1")
        with self._lock:
            self.capacity, self.acquire_timeout_s = capacity, acquire_timeout_s
            self._changed()

    def holds(self, part_id: str) -> bool:
        """Whether a part with this id is in flight (accepted, no published result or failure yet)."""
        with self._lock:
            return any(p.part_id == part_id for p in self._parts.values())

    def announce(self) -> None:
        """Hand the current state to `on_change` (at start, so the line sees `ready: false` before any frame)."""
        with self._lock:
            self._changed()

    def state(self) -> HandshakeState:
        with self._lock:
            return self._state()

    def _remove(self, ticket: int, outcome: str) -> Part | None:
        with self._lock:
            part = self._parts.pop(ticket, None)
            if part is not None:
                self._counters[outcome] += 1
                self._changed()
            return part

    def _drop(self, part: Part) -> None:
        del self._parts[part.ticket]
        self._counters["failed"] += 1

    def _waiting(self) -> Part | None:
        return next((p for p in self._parts.values() if p.frame_id is None), None)

    def _state(self) -> HandshakeState:
        acquiring = self._waiting() is not None
        ready = self._online and not acquiring and len(self._parts) < self.capacity
        return HandshakeState(self.camera, ready, bool(self._parts), acquiring, len(self._parts), self.capacity,
                              self._last_part_id, dict(self._counters))

    def _changed(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(self._state())
        except Exception:  # the publisher's problem must not stop capture or the commands
            _log.exception("trigger state callback failed", camera=self.camera)


def _name(part: Part) -> str:
    return repr(part.part_id) if part.part_id is not None else f"#{part.ticket}"
