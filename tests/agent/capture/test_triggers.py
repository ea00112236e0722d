"""The trigger queue: every trigger accepted with a position or refused as busy/overflow; parts leave it once."""

from __future__ import annotations

import pytest

from agent.capture.triggers import HandshakeState, TriggerQueue


class States:
    def __init__(self) -> None:
        self.seen: list[HandshakeState] = []

    def __call__(self, state: HandshakeState) -> None:
        self.seen.append(state)

    @property
    def last(self) -> HandshakeState:
        return self.seen[-1]


def online_queue(capacity: int = 3, states: States | None = None) -> TriggerQueue:
    queue = TriggerQueue("gate", capacity, acquire_timeout_s=1.0, on_change=states)
    queue.set_online(True)
    return queue


def captured(queue: TriggerQueue, part_id: str | None, now: float, frame_id: int) -> int:
    """Accept `part_id` at `now` and give it frame `frame_id` right after; returns its ticket."""
    answer = queue.offer(part_id, None, now)
    assert answer.status == "accepted" and answer.part is not None, answer
    assert queue.claim(frame_id, now + 0.01) is answer.part
    return answer.part.ticket


def test_an_offline_camera_refuses_as_busy_and_is_not_ready() -> None:
    states = States()
    queue = TriggerQueue("gate", 3, 1.0, on_change=states)
    queue.announce()
    assert states.seen == [HandshakeState("gate", False, False, False, 0, 3, None, queue.state().counters)]
    answer = queue.offer("P-1", None, 0.0)
    assert (answer.status, answer.part) == ("busy", None) and "not online" in answer.reason
    assert not states.last.ready and states.last.counters["busy"] == 1
    queue.set_online(True)
    assert states.last.ready and not states.last.busy


def test_accepted_parts_get_their_place_and_a_full_queue_refuses_as_overflow() -> None:
    queue = online_queue(capacity=2)
    first = queue.offer("P-1", "fail", 0.0)
    assert (first.status, first.position) == ("accepted", 1)
    assert first.part is not None and (first.part.part_id, first.part.expect) == ("P-1", "fail")
    assert queue.claim(10, 0.05) is first.part and first.part.frame_id == 10
    second = queue.offer("P-2", None, 0.2)
    assert (second.status, second.position) == ("accepted", 2)
    assert queue.claim(11, 0.25) is second.part
    third = queue.offer("P-3", None, 0.4)
    assert (third.status, third.part) == ("overflow", None) and "trigger_queue 2" in third.reason
    state = queue.state()
    assert (state.ready, state.busy, state.results_pending, state.last_part_id) == (False, True, 2, "P-2")


def test_a_trigger_while_the_previous_part_waits_for_its_frame_is_busy() -> None:
    queue = online_queue()
    assert queue.offer("P-1", None, 1.0).status == "accepted"
    assert not queue.state().ready and queue.state().acquiring
    answer = queue.offer("P-2", None, 1.01)
    assert answer.status == "busy" and "acquiring part 'P-1'" in answer.reason


def test_a_frame_grabbed_before_the_trigger_is_not_the_parts() -> None:
    queue = online_queue()
    part = queue.offer("P-1", None, 5.0).part
    assert queue.claim(1, 4.99) is None  # grabbed before the trigger arrived
    assert queue.claim(2, 5.0) is part and part is not None and part.frame_id == 2
    assert queue.claim(3, 5.1) is None  # one frame per accepted part


def test_a_finished_part_leaves_once_and_frees_its_place() -> None:
    states = States()
    queue = online_queue(capacity=1, states=states)
    ticket = captured(queue, "P-1", 0.0, 1)
    assert queue.offer("P-2", None, 0.5).status == "overflow"
    assert queue.finish(ticket) is not None
    assert queue.finish(ticket) is None and queue.fail(ticket) is None  # exactly one outcome per part
    assert states.last.ready and not states.last.busy and states.last.results_pending == 0
    assert states.last.counters == {"accepted": 1, "busy": 0, "overflow": 1, "results": 1, "failed": 0}
    assert queue.offer("P-2", None, 0.6).position == 1


def test_a_part_that_gets_no_frame_in_time_expires_as_failed() -> None:
    queue = online_queue()
    part = queue.offer("P-1", None, 0.0).part
    assert queue.expire(0.9) == []
    assert queue.expire(1.1) == [(part, "no frame within 1 s")]
    assert queue.state().counters["failed"] == 1 and queue.state().results_pending == 0
    assert queue.claim(7, 1.2) is None
    done = captured(queue, "P-2", 2.0, 8)
    assert queue.expire(100.0) == []  # a captured part waits for its result, not for a frame
    assert queue.find(done) is not None


def test_parts_without_a_part_id_are_told_apart_by_their_ticket() -> None:
    queue = online_queue()
    first, second = captured(queue, None, 0.0, 1), captured(queue, None, 1.0, 2)
    assert first != second and queue.state().results_pending == 2


def test_a_failing_state_callback_does_not_fail_the_trigger() -> None:
    def explode(_state: HandshakeState) -> None:
        raise RuntimeError("broker gone")

    queue = TriggerQueue("gate", 2, 1.0, on_change=explode)
    queue.set_online(True)
    assert queue.offer("P-1", None, 0.0).status == "accepted"


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TriggerQueue("gate", 0, 1.0)


def test_a_part_waiting_for_its_frame_when_the_camera_goes_offline_fails_at_once() -> None:
    queue = online_queue()
    done = captured(queue, "P-1", 0.0, 1)
    waiting = queue.offer("P-2", None, 0.5).part
    queue.set_online(False)
    queue.set_online(True)
    assert queue.claim(2, 0.6) is None  # the first frame after the reconnect is not P-2's
    assert queue.expire(0.6) == [(waiting, "the camera went offline before its frame")]
    assert queue.expire(0.6) == [] and queue.find(done) is not None  # a captured part keeps waiting for its result
    assert queue.state().counters["failed"] == 1


def test_new_limits_keep_the_parts_in_flight_and_a_lower_capacity_refuses_until_they_finish() -> None:
    states = States()
    queue = online_queue(capacity=3, states=states)
    first, second = captured(queue, "P-1", 0.0, 1), captured(queue, "P-2", 0.1, 2)
    queue.reconfigure(capacity=1, acquire_timeout_s=0.25)
    assert (states.last.capacity, states.last.results_pending, queue.acquire_timeout_s) == (1, 2, 0.25)
    assert queue.holds("P-1") and queue.holds("P-2") and not queue.holds("P-3")
    assert queue.offer("P-3", None, 0.2).status == "overflow"
    queue.finish(first)
    queue.finish(second)
    assert not queue.holds("P-1") and queue.offer("P-3", None, 0.3).status == "accepted"
    with pytest.raises(ValueError, match="capacity 0"):
        queue.reconfigure(capacity=0, acquire_timeout_s=1.0)
