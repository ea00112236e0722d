"""A stage runs its handler on its own thread, in order, with a bounded inbox that pushes back instead of growing."""

from __future__ import annotations

import threading
import time

import pytest

from agent.health.notify import Heartbeat
from agent.stage import Stage, StageClosed


def test_items_are_handled_in_order_on_the_stage_thread() -> None:
    seen: list[tuple[int, str]] = []
    stage: Stage[int] = Stage("results", lambda i: seen.append((i, threading.current_thread().name)))
    stage.start()
    for i in range(50):
        stage.put(i)
    stage.close(timeout=5)
    assert seen == [(i, "results") for i in range(50)]
    assert stage.handled == 50 and not stage.alive()


def test_a_stage_that_falls_behind_makes_the_producer_wait_instead_of_queueing_more() -> None:
    release = threading.Event()
    handled: list[int] = []

    def slow(item: int) -> None:
        release.wait(5)
        handled.append(item)

    stage: Stage[int] = Stage("slow", slow, max_pending=2)
    stage.start()
    stage.put(1)  # taken by the handler, which now waits
    time.sleep(0.1)
    stage.put(2)
    stage.put(3)  # the inbox is full now
    producer = threading.Thread(target=stage.put, args=(4,))
    producer.start()
    producer.join(0.3)
    assert producer.is_alive(), "put() returned although the stage was max_pending items behind"
    release.set()
    producer.join(5)
    stage.close(timeout=5)
    assert handled == [1, 2, 3, 4]


def test_a_failing_item_is_counted_and_the_next_items_are_still_handled() -> None:
    handled: list[int] = []

    def handler(item: int) -> None:
        if item == 2:
            raise OSError("disk I/O error")
        handled.append(item)

    stage: Stage[int] = Stage("results", handler)
    stage.start()
    for i in range(1, 5):
        stage.put(i)
    stage.close(timeout=5)
    assert handled == [1, 3, 4]
    assert (stage.handled, stage.failed) == (3, 1)


def test_close_handles_what_was_put_then_refuses_more() -> None:
    handled: list[int] = []

    def slow(item: int) -> None:
        time.sleep(0.01)  # still busy when close() is called
        handled.append(item)

    stage: Stage[int] = Stage("results", slow)
    stage.start()
    for i in range(5):
        stage.put(i)
    stage.close(timeout=5)
    assert handled == list(range(5))
    with pytest.raises(StageClosed, match="'results' is closed"):
        stage.put(6)


def test_an_idle_stage_keeps_its_watchdog_heartbeat_fresh() -> None:
    heartbeat = Heartbeat("results", max_age_s=0.5)
    stage: Stage[int] = Stage("results", lambda i: None, heartbeat=heartbeat)
    stage.start()
    time.sleep(1.0)  # twice the allowed age with nothing to do
    assert heartbeat.fresh()
    stage.close(timeout=5)


def test_max_pending_below_one_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="stage 'x': max_pending 0"):
        Stage("x", lambda i: None, max_pending=0)
