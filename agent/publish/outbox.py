"""Durable result outbox: every result is committed to SQLite before it is published, and kept after its PUBACK for a
retention window so that a consumer that lost results downstream can ask for them again (`cmd/replay`).

- `seq` is allocated in the same transaction that stores the row, from a counter kept in the database, so the
  sequence survives restarts and has no gaps: a result that fails to build or is refused never consumes a seq.
- WAL + `synchronous=FULL`: a committed append survives a power cut, and a SIGKILL never leaves a torn row. A batch
  of results is one transaction (one fsync). Acknowledgements (delivered marks) and prunes commit without their own
  fsync: losing a mark to a power cut only means a resend, which at-least-once delivery allows anyway.
- A row is *pending* until its PUBACK, then *delivered* (`delivered_at` set, never deleted on PUBACK: a broker killed
  before it persisted the message loses it, and the consumer then asks for it again). Delivered rows are pruned by
  age (`retention.max_age_s`) and, oldest delivery first, by their own byte budget (`retention.max_bytes`).
- Bounded by a byte budget over the pending rows (topic + payload + a fixed per-row overhead). When an append would
  exceed it the result is refused with `OutboxFull` (counted in `refused`); stored results are never evicted, because
  those are exactly the ones the line has not seen yet. See docs/mqtt.md, "Outbox".
- Delivered rows never count against the pending budget and are never what refuses a new result.
- Thread-safe: the pipeline appends, the publisher thread reads and acknowledges.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import OutboxConfig

ROW_OVERHEAD_BYTES = 64  # seq, msg_id, timestamps and SQLite cell headers, approximately
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    delivered_at REAL
);
"""
# after the migration (an outbox from before retention has no delivered_at column)
INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE delivered_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_delivered ON outbox (delivered_at, seq) WHERE delivered_at IS NOT NULL;
"""
ALARM_CHANGES_KEPT = 64  # alarm changes waiting for the publisher (it takes them every 0.2 s)
AGE_PRUNE_INTERVAL_S = 60.0  # how often the age limit is enforced (a byte overrun is pruned at once)

PayloadBuilder = Callable[[int, str], "dict[str, Any] | bytes"]


class OutboxError(RuntimeError):
    """The outbox could not store or read results (disk error, corrupt database, bad payload)."""


class OutboxFull(OutboxError):
    """The disk budget is spent; the result was not stored and got no seq."""


@dataclass(frozen=True)
class Retention:
    """How long delivered results stay replayable: at most `max_age_s` after delivery and `max_bytes` in all."""

    max_age_s: float = 24 * 3600.0
    max_bytes: int = 64 * 1024 * 1024


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


@dataclass(frozen=True)
class AlarmChange:
    """The alarm state right after it changed: on or off, results `refused` since start, pending `depth` and `bytes`."""

    active: bool
    refused: int
    depth: int
    bytes: int


@dataclass(frozen=True)
class ReplaySlice:
    """What `Outbox.replayable` found in a seq range: delivered rows still kept, seqs still pending, seqs pruned."""

    rows: list[OutboxRow]
    pending: list[int]
    pruned: list[int]


class Outbox:
    """SQLite outbox at `path` holding at most `max_bytes` of pending results plus the delivered ones of `retention`."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        alarm_fraction: float = 0.8,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.alarm_fraction = alarm_fraction
        self.retention = retention or Retention()
        self.refused = 0  # results refused because the budget was spent, since start
        self._clock = clock
        self._lock = threading.Lock()
        self._db = self._open(path)
        self._bytes, self._depth = self._totals("IS NULL")
        self._kept_bytes, self._kept = self._totals("IS NOT NULL")
        self._next_age_prune = 0.0
        self._alarm_changes: deque[AlarmChange] = deque(maxlen=ALARM_CHANGES_KEPT)
        self._alarm_noted = (False, 0)  # (active, refused) of the last change recorded
        self._note_alarm()  # an outbox reopened past its alarm fraction reports that at once

    # ----- lifecycle -------------------------------------------------------------------------------------------
    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            _migrate(db)
            db.executescript(INDEXES)
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1)")
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
        return db

    def _totals(self, delivered: str) -> tuple[int, int]:
        """(bytes, rows) of the pending (`delivered` "IS NULL") or delivered ("IS NOT NULL") rows."""
        sql = f"SELECT COALESCE(SUM(size), 0), COUNT(*) FROM outbox WHERE delivered_at {delivered}"
        row = self._db.execute(sql).fetchone()
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
            self._note_alarm()
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
        return self._rows_after("delivered_at IS NULL AND seq > ?", after_seq, limit)

    def since(self, after_seq: int, limit: int) -> list[OutboxRow]:
        """Up to `limit` rows with seq > `after_seq`, pending or delivered, oldest first (a second consumer's read:
        the Sparkplug edge node keeps its own cursor)."""
        return self._rows_after("seq > ?", after_seq, limit)

    def _rows_after(self, where: str, after_seq: int, limit: int) -> list[OutboxRow]:
        with self._lock:
            sql = f"SELECT seq, msg_id, topic, payload FROM outbox WHERE {where} ORDER BY seq LIMIT ?"
            rows = self._db.execute(sql, (after_seq, limit)).fetchall()
        return [OutboxRow(int(s), str(m), str(t), bytes(p)) for s, m, t, p in rows]

    def ack(self, seqs: Iterable[int]) -> int:
        """Mark delivered rows (the broker sent PUBACK) in one transaction, then prune what retention no longer keeps;
        returns how many rows turned from pending to delivered."""
        seqs = list(seqs)
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        with self._lock:
            try:
                # A mark that a power cut undoes only means a resend (delivery is at-least-once), so acks skip the
                # fsync; the next append's synchronous=FULL commit makes them durable too. Halves the fsyncs.
                # Each transaction sets its own level, so an append never runs with the acks' weaker one.
                self._begin_unsynced()
                where = f"seq IN ({marks}) AND delivered_at IS NULL"
                moved = int(self._db.execute(f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE {where}", seqs)
                            .fetchone()[0])
                marked = self._db.execute(f"UPDATE outbox SET delivered_at = ? WHERE {where}",
                                          [self._clock(), *seqs]).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"cannot acknowledge seqs {seqs[:5]}...: {exc}") from exc
            self._bytes, self._depth = self._bytes - moved, self._depth - marked
            self._kept_bytes, self._kept = self._kept_bytes + moved, self._kept + marked
            self._prune_over_budget()
            self._note_alarm()
        return int(marked)

    def _begin_unsynced(self) -> None:
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN IMMEDIATE")

    # ----- retention of delivered rows -------------------------------------------------------------------------
    def prune(self) -> int:
        """Delete delivered rows past the retention age (at most once a minute) or byte budget; returns how many."""
        with self._lock:
            removed = 0
            if self._clock() >= self._next_age_prune:
                self._next_age_prune = self._clock() + AGE_PRUNE_INTERVAL_S
                removed += self._delete_delivered(
                    "delivered_at IS NOT NULL AND delivered_at < ?", [self._clock() - self.retention.max_age_s])
            return removed + self._prune_over_budget()

    def _prune_over_budget(self) -> int:
        """Oldest deliveries first, until the delivered rows fit `retention.max_bytes` (caller holds the lock)."""
        excess = self._kept_bytes - self.retention.max_bytes
        if excess <= 0:
            return 0
        doomed, freed = [], 0
        for seq, size in self._db.execute(
            "SELECT seq, size FROM outbox WHERE delivered_at IS NOT NULL ORDER BY delivered_at, seq"
        ):
            if freed >= excess:
                break
            doomed.append(int(seq))
            freed += int(size)
        return self._delete_delivered(f"seq IN ({','.join('?' * len(doomed))})", doomed)

    def _delete_delivered(self, where: str, params: list[Any]) -> int:
        try:
            self._begin_unsynced()  # a prune undone by a power cut only keeps a row a little longer
            cond = f"{where} AND delivered_at IS NOT NULL"
            freed = int(self._db.execute(f"SELECT COALESCE(SUM(size), 0) FROM outbox WHERE {cond}", params)
                        .fetchone()[0])
            removed = int(self._db.execute(f"DELETE FROM outbox WHERE {cond}", params).rowcount)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise OutboxError(f"cannot prune delivered results: {exc}") from exc
        self._kept_bytes, self._kept = self._kept_bytes - freed, self._kept - removed
        return removed

    def replayable(self, from_seq: int, to_seq: int) -> ReplaySlice:
        """The rows of `from_seq`..`to_seq` (inclusive) that can be sent again, oldest first, and what cannot."""
        with self._lock:
            found = self._db.execute(
                "SELECT seq, msg_id, topic, payload, delivered_at FROM outbox WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (from_seq, to_seq),
            ).fetchall()
        rows = [OutboxRow(int(s), str(m), str(t), bytes(p)) for s, m, t, p, at in found if at is not None]
        pending = [int(s) for s, _m, _t, _p, at in found if at is None]
        present = {int(r[0]) for r in found}
        return ReplaySlice(rows, pending, [s for s in range(from_seq, to_seq + 1) if s not in present])

    # ----- gauges ----------------------------------------------------------------------------------------------
    def depth(self) -> int:
        """Pending (not yet acknowledged) results."""
        return self._depth

    def size_bytes(self) -> int:
        """What the pending results cost against `max_bytes`."""
        return self._bytes

    def kept(self) -> int:
        """Delivered results still kept for replay."""
        return self._kept

    def kept_bytes(self) -> int:
        return self._kept_bytes

    def last_seq(self) -> int:
        """The highest seq ever allocated (0 when none)."""
        with self._lock:
            return self._next_seq() - 1

    def alarm(self) -> bool:
        """True while the outbox holds more than `alarm_fraction` of its budget."""
        return self._bytes > self.alarm_fraction * self.max_bytes

    def take_alarm_changes(self) -> list[AlarmChange]:
        """The alarm changes since the last call, oldest first (the publisher reports each as an event)."""
        with self._lock:
            changes = list(self._alarm_changes)
            self._alarm_changes.clear()
        return changes

    def _note_alarm(self) -> None:
        """Record the alarm state if it changed (caller holds the lock, or is the constructor).

        Recorded where the bytes change, not sampled by the publisher: results that arrive faster than its poll
        would otherwise merge "past the alarm fraction" into "full", and the line would never see the warning that
        came before the first refusal. Further refusals before anyone took the changes merge into one."""
        state = (self.alarm(), self.refused)
        if state == self._alarm_noted:
            return
        self._alarm_noted = state
        change = AlarmChange(state[0], state[1], self._depth, self._bytes)
        last = self._alarm_changes[-1] if self._alarm_changes else None
        if last is not None and (last.active, last.refused > 0) == (change.active, change.refused > 0):
            self._alarm_changes[-1] = change
        else:
            self._alarm_changes.append(change)


def open_outbox(path: Path, cfg: OutboxConfig) -> Outbox:
    """The daemon's outbox, as the `outbox` config section describes it."""
    retention = Retention(max_age_s=cfg.retention_hours * 3600.0, max_bytes=cfg.retention_max_bytes)
    return Outbox(path, cfg.max_bytes, cfg.alarm_fraction, retention)


def _migrate(db: sqlite3.Connection) -> None:
    """An outbox from before retention deleted rows on PUBACK: every row it still holds is pending."""
    columns = {str(row[1]) for row in db.execute("PRAGMA table_info(outbox)")}
    if "delivered_at" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN delivered_at REAL")


def _encode(payload: dict[str, Any] | bytes, seq: int) -> bytes:
    if isinstance(payload, bytes):
        return payload
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise OutboxError(f"result seq {seq} is not JSON-serialisable: {exc}") from exc
