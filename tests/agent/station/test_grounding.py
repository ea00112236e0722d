"""The review page's grounding worker: one query at a time on its own thread, refused (not queued) while busy, a
caller that stops waiting after the timeout while the query finishes on its thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent.detector.tasks import Region
from agent.station.grounding import GroundingBusy, GroundingQueries

FOUND = [Region("scratch", (1.0, 2.0, 3.0, 4.0), 0.5)]


def test_a_query_runs_on_the_grounding_thread_and_comes_back_timed() -> None:
    queries = GroundingQueries()
    seen: list[str] = []

    def query() -> list[Region]:
        seen.append(threading.current_thread().name)
        return FOUND

    answer = asyncio.run(queries.run(query))
    assert answer.regions == FOUND and answer.seconds >= 0.0
    assert seen[0].startswith("station-ground") and seen[0] != threading.current_thread().name
    queries.close()


def test_a_second_query_while_one_runs_is_refused_then_the_worker_is_free_again() -> None:
    queries = GroundingQueries()
    started, release = threading.Event(), threading.Event()

    def slow() -> list[Region]:
        started.set()
        release.wait(10)
        return FOUND

    async def scenario() -> None:
        first = asyncio.ensure_future(queries.run(slow))
        assert await asyncio.to_thread(started.wait, 10)
        assert queries.busy
        with pytest.raises(GroundingBusy, match="already running"):
            await queries.run(lambda: [])
        release.set()
        assert (await first).regions == FOUND
        assert (await queries.run(lambda: [])).regions == []  # free again

    asyncio.run(scenario())
    queries.close()


def test_a_caller_stops_waiting_at_the_timeout_and_the_worker_stays_busy_until_the_query_ends() -> None:
    queries = GroundingQueries(timeout_s=0.05)
    release, done = threading.Event(), threading.Event()

    def stuck() -> list[Region]:
        release.wait(10)
        done.set()
        return FOUND

    with pytest.raises(TimeoutError):
        asyncio.run(queries.run(stuck))
    assert queries.busy and not done.is_set()
    release.set()
    assert done.wait(10)
    for _ in range(200):  # the done-callback frees the worker right after the query returns
        if not queries.busy:
            break
        threading.Event().wait(0.01)
    assert not queries.busy
    queries.close()
