"""The trigger handshake: replies, one outcome per accepted part (result_ready or trigger_failed), retained state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest

from agent.capture.triggers import Answer, TriggerQueue
from agent.capture.worker import Frame
from agent.config import CameraConfig
from agent.control.commands import CommandError, TriggerCommand
from agent.handshake import Handshake


@dataclass
class FakePublisher:
    states: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish_handshake(self, camera: str, **fields: Any) -> None:
        self.states.append((camera, fields))

    def publish_event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))


class StubWorker:
    """What the handshake uses of a CaptureWorker: its config, status, trigger queue and `trigger`."""

    def __init__(self, mode: str) -> None:
        self.cfg = CameraConfig(name="gate", mode=mode)  # type: ignore[arg-type]
        self.status = "online"
        self.triggers = TriggerQueue("gate", 2, acquire_timeout_s=0.5) if mode == "trigger" else None

    def trigger(self, part_id: str | None, expect: Any = None) -> Answer:
        assert self.triggers is not None
        return self.triggers.offer(part_id, expect, time.monotonic())


@pytest.fixture
def line() -> tuple[Handshake, StubWorker, FakePublisher]:
    publisher = FakePublisher()
    workers: dict[str, Any] = {}
    handshake = Handshake(workers, publisher)
    workers["gate"] = StubWorker("trigger")
    workers["free"] = StubWorker("free-run")
    workers["gate"].triggers.on_change = handshake.publish_state
    workers["gate"].triggers.set_online(True)
    return handshake, workers["gate"], publisher


def frame_of(reply: dict[str, Any], worker: StubWorker, frame_id: int) -> Frame:
    """Let the camera capture the accepted part's frame, as the capture thread would."""
    part = worker.triggers.claim(frame_id, time.monotonic() + 1.0) if worker.triggers else None
    assert part is not None and part.part_id == reply["part_id"]
    image = np.zeros((4, 4, 3), np.uint8)
    return Frame("gate", frame_id, datetime.now(timezone.utc), image, part_id=part.part_id, trigger=part.ticket)


def test_an_accepted_trigger_replies_with_its_place_and_a_refusal_says_busy(line) -> None:
    handshake, _worker, publisher = line
    reply = handshake.trigger(TriggerCommand(camera="gate", part_id="P-1", expect="fail"))
    assert reply == {"status": "accepted", "camera": "gate", "part_id": "P-1", "position": 1, "capacity": 2}
    assert handshake.workers["gate"].triggers.find(1).expect == "fail"  # reaches the frame (flagged-miss)
    with pytest.raises(CommandError) as refused:
        handshake.trigger(TriggerCommand(camera="gate", part_id="P-2"))
    assert refused.value.fields == {"status": "busy", "camera": "gate", "part_id": "P-2"}
    assert "nothing captured" in str(refused.value)
    camera, state = publisher.states[-1]
    assert camera == "gate" and (state["ready"], state["busy"], state["results_pending"]) == (False, True, 1)
    assert state["last_part_id"] == "P-1" and state["counters"]["busy"] == 1


def test_unknown_and_free_running_cameras_are_errors_without_a_status(line) -> None:
    handshake, _worker, _publisher = line
    with pytest.raises(CommandError, match="unknown camera 'nope'") as unknown:
        handshake.trigger(TriggerCommand(camera="nope"))
    with pytest.raises(CommandError, match="'free-run' mode"):
        handshake.trigger(TriggerCommand(camera="free"))
    assert unknown.value.fields == {}


def test_a_delivered_result_announces_result_ready_once_and_frees_the_place(line) -> None:
    handshake, worker, publisher = line
    frame = frame_of(handshake.trigger(TriggerCommand(camera="gate", part_id="P-1")), worker, 7)
    with handshake.recording():
        handshake.stored([(frame, "fail", 41)])
    assert worker.triggers.state().results_pending == 1  # stored is not yet published
    handshake.delivered([40, 41])  # 40: a result of no trigger
    handshake.delivered([41])
    assert publisher.events == [("result_ready", {"camera": "gate", "part_id": "P-1", "seq": 41, "frame_id": 7,
                                                  "verdict": "fail"})]
    state = publisher.states[-1][1]
    assert (state["ready"], state["busy"], state["results_pending"]) == (True, False, 0)


def test_a_result_the_outbox_refused_or_a_frame_the_detector_refused_fails_the_part(line) -> None:
    handshake, worker, publisher = line
    first = frame_of(handshake.trigger(TriggerCommand(camera="gate", part_id="P-1")), worker, 1)
    second = frame_of(handshake.trigger(TriggerCommand(camera="gate", part_id="P-2")), worker, 2)
    with handshake.recording():
        handshake.stored([(first, "pass", None)])
    handshake.skipped(second, "frame is 0x0")
    assert [(kind, f["part_id"]) for kind, f in publisher.events] == [("trigger_failed", "P-1"),
                                                                      ("trigger_failed", "P-2")]
    assert "outbox refused" in publisher.events[0][1]["reason"] and "0x0" in publisher.events[1][1]["reason"]
    assert worker.triggers.state().counters["failed"] == 2 and worker.triggers.state().results_pending == 0


def test_a_part_without_a_frame_fails_after_its_timeout_or_when_the_daemon_stops(line) -> None:
    handshake, _worker, publisher = line
    before = time.monotonic()
    handshake.trigger(TriggerCommand(camera="gate", part_id="P-1"))
    handshake.tick(now=before)
    assert publisher.events == []
    handshake.tick(now=before + 0.6)  # the stub's acquire timeout is 0.5 s
    handshake.trigger(TriggerCommand(camera="gate", part_id="P-2"))
    handshake.tick(stopping=True)
    reasons = [(f["part_id"], f["reason"]) for _kind, f in publisher.events]
    assert reasons == [("P-1", "no frame within 0.5 s"), ("P-2", "daemon stopping")]


def test_storing_outside_recording_is_a_bug_caught_at_once(line) -> None:
    handshake, _worker, _publisher = line
    with pytest.raises(RuntimeError, match="outside recording"):
        handshake.stored([])


def test_the_parts_of_a_camera_a_reload_removed_still_get_their_one_outcome(line) -> None:
    handshake, worker, publisher = line
    inspected = frame_of(handshake.trigger(TriggerCommand(camera="gate", part_id="P-1")), worker, 3)
    handshake.trigger(TriggerCommand(camera="gate", part_id="P-2"))  # still waits for its frame
    queue = worker.triggers
    del handshake.workers["gate"]  # the reload removed the camera (CameraSet), retired its queue, stopped it
    handshake.retire(queue)
    queue.set_online(False)
    with pytest.raises(CommandError, match="unknown camera 'gate'"):
        handshake.trigger(TriggerCommand(camera="gate", part_id="P-3"))
    assert not handshake.in_flight("gate", "P-9") and handshake.in_flight("gate", "P-1")
    with handshake.recording():
        handshake.stored([(inspected, "pass", 12)])
    handshake.tick()
    handshake.delivered([12])
    outcomes = [(kind, f["part_id"]) for kind, f in publisher.events]
    assert outcomes == [("trigger_failed", "P-2"), ("result_ready", "P-1")]
    handshake.tick()
    assert not handshake.in_flight("gate", "P-1") and handshake._retired == {}  # settled: the queue is let go
