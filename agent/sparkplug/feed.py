"""The edge node's read of the outbox: which stored results go out next, and which the broker surely has.

Sparkplug publishes DDATA at QoS 0, so there is no PUBACK to wait for. A result counts as received (`confirmed`,
persisted as the cursor) when the broker has forwarded our own DDATA back to us (the node subscribes to its
DDATA topics; the broker keeps one connection's messages in order, so everything before it arrived too), or, on a
broker whose ACL does not let us read our own DDATA, once the link has stayed up for `assume_after_s` after the
result went out (paho notices a dead link within 1.5 x keepalive, so by then a loss would have ended the session).
A session that ends resends everything after the cursor after its rebirth: at least once, never lost while the
outbox keeps the rows. Rows the outbox pruned before we sent them (retention) are skipped and counted.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from agent.publish.outbox import Outbox, OutboxRow

log = structlog.get_logger("agent.sparkplug")


@dataclass(frozen=True)
class StoredResult:
    """One outbox row as the edge node publishes it."""

    seq: int
    camera: str
    result: dict[str, Any]


class OutboxFeed:
    """Reads results after the cursor in seq order; counts each result's verdict once per daemon run (`count`)."""

    def __init__(self, outbox: Outbox, cursor: int | None, assume_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.outbox = outbox
        newest = outbox.last_seq()
        if cursor is not None and cursor > newest:
            log.warning("sparkplug cursor is past the outbox's newest result (a new outbox?); starting from there",
                        cursor=cursor, newest=newest)
        self.confirmed = newest if cursor is None or cursor > newest else cursor
        self.assume_after_s = assume_after_s
        self.skipped = 0  # results pruned from the outbox before the node sent them
        self.unreadable = 0  # rows whose payload is not a result object
        self.counts: dict[str, dict[str, int]] = {}  # camera -> verdict -> results, this run
        self.last: dict[str, dict[str, Any]] = {}  # camera -> its newest result sent
        self._clock = clock
        self._next = self.confirmed  # highest seq taken in this session
        self._counted = self.confirmed
        self._sent: deque[tuple[int, float]] = deque()  # (seq, when it went out), not yet confirmed

    def restart(self) -> None:
        """A new session: everything not confirmed goes out again."""
        self._next = self.confirmed
        self._sent.clear()

    def take(self, limit: int) -> list[StoredResult]:
        """The next results to publish (at most `limit`), oldest first; call `sent` for each once published."""
        rows = self.outbox.since(self._next, limit)
        if rows and rows[0].seq > self._next + 1:
            self._skip(self._next + 1, rows[0].seq - 1)
        results: list[StoredResult] = []
        for row in rows:
            self._next = row.seq
            result = self._parse(row)
            if result is not None:
                results.append(result)
            else:
                self.sent(row.seq)  # nothing to send: confirmed with its neighbours
        return results

    def sent(self, seq: int) -> None:
        self._sent.append((seq, self._clock()))

    def confirm_upto(self, seq: int) -> None:
        """The broker echoed the DDATA of result `seq`: it has that one and every earlier one of this session."""
        while self._sent and self._sent[0][0] <= seq:
            self.confirmed = max(self.confirmed, self._sent.popleft()[0])

    def confirm_aged(self) -> None:
        """Results out for longer than `assume_after_s` on a link still up count as received."""
        horizon = self._clock() - self.assume_after_s
        while self._sent and self._sent[0][1] <= horizon:
            self.confirmed = max(self.confirmed, self._sent.popleft()[0])

    def caught_up(self) -> bool:
        """Everything stored was sent and confirmed."""
        return not self._sent and self.confirmed >= self.outbox.last_seq()

    def _skip(self, first: int, last: int) -> None:
        self.skipped += last - first + 1
        log.error("results pruned from the outbox before Sparkplug sent them (outbox.retention_hours / "
                  "retention_max_bytes too small for the broker outage)", first_seq=first, last_seq=last,
                  skipped=self.skipped)

    def _parse(self, row: OutboxRow) -> StoredResult | None:
        try:
            result = json.loads(row.payload)
            camera = str(result["camera"])
        except (ValueError, TypeError, KeyError) as exc:
            self.unreadable += 1
            log.error("outbox row is not a result; not sent over Sparkplug", seq=row.seq, error=repr(exc))
            return None
        return StoredResult(row.seq, camera, result)

    def count(self, stored: StoredResult) -> None:
        """Note a result about to go out: its camera's newest, and its verdict counted unless it was already."""
        self.last[stored.camera] = stored.result
        if stored.seq <= self._counted:
            return  # sent again after a reconnect: counted already
        self._counted = stored.seq
        verdicts = self.counts.setdefault(stored.camera, {})
        verdict = str(stored.result.get("verdict"))
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
