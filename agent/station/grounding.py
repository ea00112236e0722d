"""Phrase-grounding queries of the review page ("find the ..."), run with the served model off every other thread.

A query decodes with the daemon's model, which takes as long as inspecting a frame or longer, so it never runs on the
inspection thread, the station's event loop or its request threads: it runs on one worker thread of its own
(`station-ground`), one query at a time. A second query while one runs is refused at once (`GroundingBusy`), not
queued behind it, so a technician pressing Find twice cannot pile up decodes that compete with inspection. The
caller waits at most `timeout_s`; a query that takes longer still finishes on its thread (a decode cannot be
interrupted) and only then frees the worker for the next one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from agent.detector.tasks import Region

DEFAULT_TIMEOUT_S = 60.0


class GroundingBusy(RuntimeError):
    """Another grounding query is running; this one was not started."""


@dataclass(frozen=True)
class GroundingAnswer:
    regions: list[Region]
    seconds: float


class GroundingQueries:
    """One query at a time on a lazily started worker thread; `run` awaits it without blocking the event loop."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._busy = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    async def run(self, query: Callable[[], list[Region]]) -> GroundingAnswer:
        """Run `query` on the worker; `GroundingBusy` when one runs already, `TimeoutError` after `timeout_s`."""
        future = self._submit(query)
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.timeout_s)

    def _submit(self, query: Callable[[], list[Region]]) -> Future[GroundingAnswer]:
        if not self._busy.acquire(blocking=False):
            raise GroundingBusy("a grounding query is already running (one at a time); try again when it ends")
        try:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="station-ground")
            future = self._executor.submit(_timed, query)
        except BaseException:
            self._busy.release()
            raise
        future.add_done_callback(lambda _: self._busy.release())
        return future

    def close(self) -> None:
        """Stop taking queries; a running one finishes on its thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _timed(query: Callable[[], list[Region]]) -> GroundingAnswer:
    started = time.perf_counter()
    regions = query()
    return GroundingAnswer(regions, time.perf_counter() - started)
