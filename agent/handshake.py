"""The trigger handshake with the line (PLC): `cmd/trigger` replies, the retained per-camera state, `result_ready`.

Every accepted part ends in exactly one of: its result is published (the broker acknowledged it) and a
`result_ready` event follows, or a `trigger_failed` event says why it will get none (no frame in time, the detector
refused the frame, the outbox refused the result). Refused triggers get `{"ok": false, "status": "busy"|"overflow"}`
and capture nothing. The camera's `TriggerQueue` (agent/capture/triggers.py) decides; this module wires it to the
commands, the results stage and the MQTT publisher. Topics and payloads: docs/mqtt.md, "Trigger handshake".
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import structlog

from agent.capture.triggers import HandshakeState, Part, TriggerQueue
from agent.capture.worker import CaptureWorker, Frame
from agent.control.commands import CommandError, TriggerCommand

log = structlog.get_logger("agent.handshake")


class HandshakePublisher(Protocol):
    def publish_handshake(self, camera: str, **fields: Any) -> None: ...

    def publish_event(self, kind: str, **fields: Any) -> None: ...


@dataclass(frozen=True)
class _Stored:
    """A triggered part whose result is in the outbox, waiting for the broker's PUBACK."""

    part: Part
    verdict: str


class Handshake:
    """Trigger replies and part bookkeeping for every trigger-mode camera of the daemon."""

    def __init__(self, workers: Mapping[str, CaptureWorker], publisher: HandshakePublisher) -> None:
        self.workers = workers  # the daemon's dict, filled when the cameras start
        self.publisher = publisher
        self._stored: dict[int, _Stored] = {}  # outbox seq -> part
        self._retired: dict[str, TriggerQueue] = {}  # cameras a reload removed or took out of trigger mode
        self._record = threading.Lock()  # a PUBACK must not overtake the record of its part's seq
        self.state_listeners: list[Callable[[HandshakeState], None]] = []  # besides MQTT: the OPC UA server

    # ----- commands thread -----------------------------------------------------------------------------------------
    def trigger(self, cmd: TriggerCommand) -> dict[str, Any]:
        """`cmd/trigger`: accepted with its position, or CommandError with `status` busy/overflow."""
        worker = self.workers.get(cmd.camera)
        if worker is None:
            raise CommandError(f"camera: unknown camera {cmd.camera!r}; cameras: {sorted(self.workers)}")
        if worker.triggers is None:
            raise CommandError(f"camera: {cmd.camera!r} runs in {worker.cfg.mode!r} mode, not 'trigger'")
        answer = worker.trigger(cmd.part_id, cmd.expect)
        fields = {"status": answer.status, "camera": cmd.camera, "part_id": cmd.part_id}
        if answer.part is None:
            log.info("trigger refused", reason=answer.reason, **fields)
            raise CommandError(f"{answer.status}: {answer.reason}; nothing captured, retry", **fields)
        return {**fields, "position": answer.position, "capacity": worker.triggers.capacity}

    def in_flight(self, camera: str, part_id: str) -> bool:
        """Whether `part_id` is accepted on `camera` and has no published result or failure yet."""
        queue = self._queue(camera)
        return queue is not None and queue.holds(part_id)

    # ----- reloads (commands thread) -------------------------------------------------------------------------------
    def retire(self, queue: TriggerQueue) -> None:
        """A reload removed the queue's camera or switched it to free-run: the parts still in flight keep their one
        outcome (`result_ready` once the broker has their result, or `trigger_failed`); the queue goes after that."""
        self._retired[queue.camera] = queue

    # ----- capture threads -----------------------------------------------------------------------------------------
    def publish_state(self, state: HandshakeState) -> None:
        """The camera's retained handshake state (called by its TriggerQueue after every change)."""
        fields = asdict(state)
        self.publisher.publish_handshake(fields.pop("camera"), **fields)
        for listener in self.state_listeners:
            listener(state)

    # ----- results thread ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Hold while storing a batch and calling `stored`, so `delivered` never sees a seq before its part."""
        with self._record:
            yield

    def stored(self, results: Sequence[tuple[Frame, str, int | None]]) -> None:
        """Each (frame, verdict, seq or None when the outbox refused it) of a stored batch; inside `recording`."""
        if not self._record.locked():
            raise RuntimeError("Handshake.stored outside recording(): a PUBACK could overtake the record of its seq")
        for frame, verdict, seq in results:
            part = self._part_of(frame)
            if part is None:
                continue
            if seq is None:
                self._failed(frame.camera, frame.trigger, "the outbox refused its result (see outbox_alarm)")
            else:
                self._stored[seq] = _Stored(part, verdict)

    def skipped(self, frame: Frame, reason: str) -> None:
        """The detector refused the frame: its part gets no result."""
        self._failed(frame.camera, frame.trigger, f"the detector refused its frame: {reason}")

    # ----- MQTT drain thread ---------------------------------------------------------------------------------------
    def delivered(self, seqs: Sequence[int]) -> None:
        """The broker acknowledged these results: their parts leave the queue and `result_ready` goes out."""
        with self._record:
            done = [(seq, item) for seq in seqs if (item := self._stored.pop(seq, None)) is not None]
        for seq, item in done:
            part = item.part
            queue = self._queue(part.camera)
            if queue is None or queue.finish(part.ticket) is None:
                continue
            self.publisher.publish_event("result_ready", camera=part.camera, part_id=part.part_id, seq=seq,
                                         frame_id=part.frame_id, verdict=item.verdict)

    # ----- inference thread ----------------------------------------------------------------------------------------
    def tick(self, now: float | None = None, stopping: bool = False) -> None:
        """Announce the parts that lost their frame: camera offline, waited too long at `now`, or the daemon stops
        (every part still waiting)."""
        now = math.inf if stopping else (time.monotonic() if now is None else now)
        for queue in self._queues():
            for part, reason in queue.expire(now):
                self._announce_failure(part, "daemon stopping" if stopping else reason)
        self._forget_settled()

    def _queues(self) -> list[TriggerQueue]:
        """Every trigger queue with parts that may be in flight: the cameras' and the retired ones."""
        queues = [w.triggers for w in self.workers.values() if w.triggers is not None]
        return queues + [q for q in list(self._retired.values()) if all(q is not mine for mine in queues)]

    def _queue(self, camera: str) -> TriggerQueue | None:
        worker = self.workers.get(camera)
        if worker is not None and worker.triggers is not None:
            return worker.triggers
        return self._retired.get(camera)

    def _forget_settled(self) -> None:
        """Retired queues without parts in flight, or taken up again by their camera, are done with."""
        for camera, queue in list(self._retired.items()):
            worker = self.workers.get(camera)
            if queue.state().results_pending == 0 or (worker is not None and worker.triggers is queue):
                self._retired.pop(camera, None)

    def _part_of(self, frame: Frame) -> Part | None:
        queue = self._queue(frame.camera)
        if frame.trigger is None or queue is None:
            return None
        return queue.find(frame.trigger)

    def _failed(self, camera: str, ticket: int | None, reason: str) -> None:
        queue = self._queue(camera)
        if ticket is None or queue is None:
            return
        part = queue.fail(ticket)
        if part is not None:
            self._announce_failure(part, reason)

    def _announce_failure(self, part: Part, reason: str) -> None:
        log.warning("triggered part not inspected", camera=part.camera, part_id=part.part_id, reason=reason)
        self.publisher.publish_event("trigger_failed", camera=part.camera, part_id=part.part_id, reason=reason)
