"""Durable result outbox: every result is committed to SQLite before it is published; rows leave only on PUBACK.

- `seq` is allocated in the same transaction that stores the row, from a counter kept in the database, so the
  sequence survives restarts and has no gaps: a result that fails to build or is refused never consumes a seq.
- WAL + `synchronous=FULL`: a committed append survives a power cut, and a SIGKILL never leaves a torn row. A batch
  of results is one transaction (one fsync). Acknowledgements (deletes) commit without their own fsync: losing one
  to a power cut only means a resend, which at-least-once delivery allows anyway.
- Bounded by a byte budget over the stored rows (topic + payload + a fixed per-row overhead). When an append would
  exceed it the result is refused with `OutboxFull` (counted in `refused`); stored results are never evicted, because
  those are exactly the ones the line has not seen yet. See docs/mqtt.md, "Outbox".
- Thread-safe: the pipeline appends, the publisher thread reads and acknowledges.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROW_OVERHEAD_BYTES = 64  # seq, msg_id, timestamps and SQLite cell headers, approximately
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL
);
"""

PayloadBuilder = Callable[[int, str], "dict[str, Any] | bytes"]


class OutboxError(RuntimeError):
    """The outbox could not store or read results (disk error, corrupt database, bad payload)."""


class OutboxFull(OutboxError):
    """The disk budget is spent; the result was not stored and got no seq."""


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    msg_id: str
    topic: str
    payload: bytes

    @property
    def size(self) -> int:
        """What the row costs against the byte budget."""
        return len(self.topic.encode()) + len(self.payload) + ROW_OVERHEAD_BYTES


class Outbox:
    """SQLite outbox at `path` holding at most `max_bytes` of pending results."""

    def __init__(self, path: Path, max_bytes: int, alarm_fraction: float = 0.8) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.alarm_fraction = alarm_fraction
        self.refused = 0  # results refused because the budget was spent, since start
        self._lock = threading.Lock()
        self._db = self._open(path)
        self._bytes, self._depth = self._totals()

    # ----- lifecycle -------------------------------------------------------------------------------------------
    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1)")
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        return db

    def _totals(self) -> tuple[int, int]:
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox").fetchone()
        return int(row[0]), int(row[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file ('ok' when sound)."""
        with self._lock:
            return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    # ----- writing ---------------------------------------------------------------------------------------------
    def append(self, topic: str, build: PayloadBuilder) -> tuple[int, str]:
        """Store one result; `build(seq, msg_id)` makes its payload (a JSON-able dict or bytes). Returns (seq, msg_id).

        Raises OutboxFull when the budget is spent, OutboxError on disk errors; neither consumes a seq.
        """
        (stored,) = self.append_many([(topic, build)])
        if isinstance(stored, OutboxError):
            raise stored
        return stored

    def append_many(self, entries: Sequence[tuple[str, PayloadBuilder]]) -> list[tuple[int, str] | OutboxError]:
        """Store several results, in order, in one transaction (one fsync for a whole batch of frames).

        Each entry comes back as its (seq, msg_id), or as the `OutboxError` saying why it was not stored: `OutboxFull`
        past the budget, a payload that is not JSON. Refused entries consume no seq, so the stored ones stay
        gap-free. A disk error while committing refuses every entry of the call (nothing of it is stored).
        """
        with self._lock:
            seq = self._next_seq()
            rows: list[OutboxRow] = []
            outcome: list[tuple[int, str] | OutboxError] = []
            used = self._bytes  # stored rows plus the rows of this call accepted so far
            for topic, build in entries:
                row = self._build_row(seq, topic, build)
                if not isinstance(row, OutboxError):
                    row = self._within_budget(row, used, self._depth + len(rows))
                if isinstance(row, OutboxError):
                    outcome.append(row)
                    continue
                rows.append(row)
                outcome.append((row.seq, row.msg_id))
                used += row.size
                seq += 1
            if rows:
                try:
                    self._insert(rows)
                except OutboxError as exc:
                    return [exc] * len(entries)
        return outcome

    @staticmethod
    def _build_row(seq: int, topic: str, build: PayloadBuilder) -> OutboxRow | OutboxError:
        msg_id = uuid.uuid4().hex
        try:
            return OutboxRow(seq, msg_id, topic, _encode(build(seq, msg_id), seq))
        except OutboxError as exc:
            return exc
        except Exception as exc:  # one result that cannot be built must not cost the rest of its batch
            return OutboxError(f"result seq {seq} for {topic}: payload could not be built: {exc!r}")

    def _within_budget(self, row: OutboxRow, used: int, depth: int) -> OutboxRow | OutboxFull:
        """`row` if it fits beside the `used` bytes of `depth` unacknowledged rows; else the refusal (counted)."""
        if used + row.size <= self.max_bytes:
            return row
        self.refused += 1
        return OutboxFull(
            f"outbox full: {used} of {self.max_bytes} bytes used by {depth} unacknowledged "
            f"results; refused result for {row.topic} ({self.refused} refused since start)"
        )

    def _next_seq(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])

    def _insert(self, rows: list[OutboxRow]) -> None:
        first, last = rows[0], rows[-1]
        try:
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO outbox (seq, msg_id, topic, payload, size) VALUES (?, ?, ?, ?, ?)",
                [(r.seq, r.msg_id, r.topic, r.payload, r.size) for r in rows],
            )
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (last.seq + 1,))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            seqs = f"seq {first.seq}" if first is last else f"seqs {first.seq}-{last.seq}"
            raise OutboxError(f"cannot store results {seqs} for {last.topic}: {exc}") from exc
        self._bytes += sum(r.size for r in rows)
        self._depth += len(rows)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # ----- reading and acknowledging ---------------------------------------------------------------------------
    def pending(self, limit: int, after_seq: int = 0) -> list[OutboxRow]:
        """Up to `limit` unacknowledged rows with seq > `after_seq`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, msg_id, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [OutboxRow(int(s), str(m), str(t), bytes(p)) for s, m, t, p in rows]

    def ack(self, seqs: Iterable[int]) -> int:
        """Delete delivered rows (the broker sent PUBACK) in one transaction; returns how many were removed."""
        seqs = list(seqs)
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        with self._lock:
            try:
                # A delete that a power cut undoes only means a resend (delivery is at-least-once), so acks skip the
                # fsync; the next append's synchronous=FULL commit makes them durable too. Halves the fsyncs.
                # Each transaction sets its own level, so an append never runs with the acks' weaker one.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                freed = self._db.execute(f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE seq IN ({marks})", seqs)
                freed_bytes = int(freed.fetchone()[0])
                removed = self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", seqs).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"cannot acknowledge seqs {seqs[:5]}...: {exc}") from exc
            self._bytes -= freed_bytes
            self._depth -= removed
        return int(removed)

    # ----- gauges ----------------------------------------------------------------------------------------------
    def depth(self) -> int:
        return self._depth

    def size_bytes(self) -> int:
        return self._bytes

    def last_seq(self) -> int:
        """The highest seq ever allocated (0 when none)."""
        with self._lock:
            return self._next_seq() - 1

    def alarm(self) -> bool:
        """True while the outbox holds more than `alarm_fraction` of its budget."""
        return self._bytes > self.alarm_fraction * self.max_bytes


def _encode(payload: dict[str, Any] | bytes, seq: int) -> bytes:
    if isinstance(payload, bytes):
        return payload
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise OutboxError(f"result seq {seq} is not JSON-serialisable: {exc}") from exc
