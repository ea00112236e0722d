"""The line's feedback on parts already inspected: `cmd/flag {camera, part_id, reason?}` (docs/mqtt.md, "Flag").

A PLC often learns only later that a part was bad (a downstream test failed). `RecentParts` remembers, per camera,
the last `queue.flag_parts` parts the box inspected (part id, frame id, verdict, the learning queue entry its frame
went to) and, for pass/uncertain parts not queued, their inspected frame while `queue.flag_frames_bytes` allows
(newest kept). A flag then queues that frame for review as a miss (the `flagged-miss` sampler, with the line's
reason); a part the box failed needs nothing (it agreed); a part already queued gets the flag added to its entry's
reason; a part never seen, still in flight or forgotten is refused saying which. Memory only: a restart forgets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import structlog

from agent.control.commands import CommandError, FlagCommand
from agent.inspected import Inspected
from agent.learn.entry import QueueError
from agent.learn.queue import LearningQueue

log = structlog.get_logger("agent.flags")
FLAGGED_MISS = "flagged-miss"


@dataclass(frozen=True)
class SeenPart:
    """An inspected part as a later flag needs it."""

    camera: str
    part_id: str
    frame_id: int
    verdict: str
    entry: int | None = None  # the learning queue entry its frame went to
    item: Inspected | None = None  # its inspected frame, while held (pass/uncertain, not queued, memory allowing)


class RecentParts:
    """The parts recently inspected, by camera and part id; thread-safe (results thread notes, commands thread asks)."""

    def __init__(self, per_camera: int, max_bytes: int) -> None:
        self.per_camera, self.max_bytes = per_camera, max_bytes
        self._parts: dict[str, OrderedDict[str, SeenPart]] = {}
        self._held: OrderedDict[tuple[str, str], int] = OrderedDict()  # parts whose frame is held -> bytes, oldest 1st
        self._held_bytes = 0
        self._lock = threading.Lock()

    def note(self, item: Inspected) -> None:
        """An inspected frame (before its result is stored, so a flag sent on the result finds it)."""
        f = item.frame
        if f.part_id is None or self.per_camera == 0:
            return
        held = item if item.decision.verdict != "fail" else None
        with self._lock:
            parts = self._parts.setdefault(f.camera, OrderedDict())
            self._let_go(f.camera, f.part_id)  # a part inspected again: the newest inspection counts
            parts[f.part_id] = SeenPart(f.camera, f.part_id, f.frame_id, item.decision.verdict, item=held)
            parts.move_to_end(f.part_id)
            if held is not None:
                self._held[(f.camera, f.part_id)] = f.image.nbytes
                self._held_bytes += f.image.nbytes
            self._fit()

    def queued(self, item: Inspected, entry: int) -> None:
        """The frame went to the learning queue as `entry`: its part no longer needs it held."""
        f = item.frame
        with self._lock:
            seen = self._seen(f.camera, f.part_id or "")
            if seen is not None and seen.frame_id == f.frame_id:
                self._let_go(f.camera, seen.part_id)
                self._parts[f.camera][seen.part_id] = replace(seen, entry=entry, item=None)

    def find(self, camera: str, part_id: str) -> SeenPart | None:
        with self._lock:
            return self._seen(camera, part_id)

    def _seen(self, camera: str, part_id: str) -> SeenPart | None:
        parts = self._parts.get(camera)
        return parts.get(part_id) if parts is not None else None

    def cameras(self) -> set[str]:
        with self._lock:
            return set(self._parts)

    def resize(self, per_camera: int, max_bytes: int) -> None:
        """New limits (a reload): the oldest parts and frames beyond them are forgotten now."""
        with self._lock:
            self.per_camera, self.max_bytes = per_camera, max_bytes
            self._fit()

    def held_bytes(self) -> int:
        with self._lock:
            return self._held_bytes

    def _fit(self) -> None:
        for camera, parts in self._parts.items():
            while len(parts) > self.per_camera:
                part_id = next(iter(parts))
                self._let_go(camera, part_id)
                del parts[part_id]
        while self._held and self._held_bytes > self.max_bytes:
            camera, part_id = next(iter(self._held))
            self._let_go(camera, part_id)

    def _let_go(self, camera: str, part_id: str) -> None:
        """Stop holding the part's frame (the part itself is still remembered)."""
        size = self._held.pop((camera, part_id), None)
        if size is not None:
            self._held_bytes -= size
            self._parts[camera][part_id] = replace(self._parts[camera][part_id], item=None)


class FlagDesk:
    """`cmd/flag`: finds the part, queues its frame as a miss or says why not."""

    def __init__(self, parts: RecentParts, queue: LearningQueue, cameras: Callable[[], set[str]],
                 in_flight: Callable[[str, str], bool]) -> None:
        self.parts, self.queue, self.cameras, self.in_flight = parts, queue, cameras, in_flight

    def flag(self, cmd: FlagCommand) -> dict[str, Any]:
        seen = self.parts.find(cmd.camera, cmd.part_id)
        fields: dict[str, Any] = {"camera": cmd.camera, "part_id": cmd.part_id}
        if seen is None:
            raise CommandError(self._not_found(cmd), **fields, found=False, queued=False)
        fields |= {"found": True, "frame_id": seen.frame_id, "verdict": seen.verdict}
        log.info("part flagged by the line", reason=cmd.reason, **fields)
        if seen.verdict == "fail":
            return {**fields, "queued": False, "reason": "the box failed this part too: nothing to learn"}
        if seen.entry is not None and (entry := self._add_flag(seen.entry, cmd)) is not None:
            return {**fields, "queued": True, "entry": entry, "already_queued": True}
        if seen.item is None:
            raise CommandError(f"part_id: the frame of part {cmd.part_id!r} (camera {cmd.camera!r}, frame "
                               f"{seen.frame_id}, {seen.verdict}) is no longer held (queue.flag_frames_bytes keeps "
                               "the newest); nothing queued", **fields, queued=False)
        return {**fields, **self._queue_miss(seen.item, cmd)}

    def _not_found(self, cmd: FlagCommand) -> str:
        known = self.cameras() | self.parts.cameras()
        if cmd.camera not in known:
            return f"camera: unknown camera {cmd.camera!r}; cameras: {sorted(known)}"
        if self.in_flight(cmd.camera, cmd.part_id):
            return (f"part_id: part {cmd.part_id!r} on camera {cmd.camera!r} is still being inspected; flag it "
                    "after its result, or trigger it with expect: defect")
        return (f"part_id: camera {cmd.camera!r} inspected no part {cmd.part_id!r} that the box remembers (it keeps "
                f"the last {self.parts.per_camera} per camera, queue.flag_parts; a restart forgets them)")

    def _add_flag(self, entry: int, cmd: FlagCommand) -> int | None:
        """The flag added to the reason of the part's queue entry; None when the entry is gone (evicted, purged)."""
        try:
            return self.queue.add_reason(entry, f"flagged by the line: {cmd.reason or 'no reason given'}").id
        except QueueError:
            return None

    def _queue_miss(self, item: Inspected, cmd: FlagCommand) -> dict[str, Any]:
        if not any(s.name == FLAGGED_MISS for s in self.queue.samplers):
            return {"queued": False, "reason": f"queue.samplers does not list {FLAGGED_MISS}: flags are not queued"}
        limits = item.thresholds.for_classes(item.detections.class_names)
        offered = self.queue.offer(item.frame, item.detections, limits, flagged=True, model=item.model,
                                   flag_reason=cmd.reason or "cmd/flag", verdict=item.decision.verdict)
        if offered.entry is None:
            return {"queued": False, "reason": offered.skipped}
        self.parts.queued(item, offered.entry.id)
        return {"queued": True, "entry": offered.entry.id}
