"""A pipeline stage on its own thread: a bounded inbox, one handler, failures logged, everything drained on close.

The daemon runs the result steps (outbox, MQTT hand-off, learning queue, gauges) in a `Stage` so that inference never
waits for an fsync or a lock held by the MQTT drain thread. The inbox holds at most `max_pending` items: when the
stage falls behind, `put` blocks the producer (back-pressure), so memory stays bounded and no item is ever dropped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

from agent.health.notify import Heartbeat

log = structlog.get_logger(__name__)

T = TypeVar("T")
_POLL_S = 0.2  # how often an idle stage beats its heartbeat and looks for close()
_CLOSED = object()  # sentinel: everything before it has been handled


class StageClosed(RuntimeError):
    """`put` after `close()`."""


class Stage(Generic[T]):
    """Runs `handler(item)` for each item `put`, in order, on one thread named `name`."""

    def __init__(self, name: str, handler: Callable[[T], None], max_pending: int = 2,
                 heartbeat: Heartbeat | None = None) -> None:
        if max_pending < 1:
            raise ValueError(f"stage {name!r}: max_pending {max_pending} must be at least 1")
        self.name = name
        self.handled = 0
        self.failed = 0
        self._handler = handler
        self._heartbeat = heartbeat
        self._inbox: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, item: T) -> None:
        """Hand `item` on; blocks while `max_pending` items wait (the stage is behind)."""
        if self._closed:
            raise StageClosed(f"stage {self.name!r} is closed; item not accepted")
        self._inbox.put(item)

    def close(self, timeout: float | None = None) -> None:
        """Handle every item already put, then stop the thread (wait at most `timeout` seconds)."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._inbox.put(_CLOSED)
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            if self._heartbeat is not None:
                self._heartbeat.beat()
            try:
                item = self._inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _CLOSED:
                return
            self._handle(item)  # type: ignore[arg-type]  # everything but the sentinel came through put(T)

    def _handle(self, item: T) -> None:
        try:
            self._handler(item)
            self.handled += 1
        except Exception:  # one failing item (a disk error, a bug) must not stop the items after it
            self.failed += 1
            log.exception("stage handler failed; going on with the next item", stage=self.name, failed=self.failed)
