"""The outbox stores every result before publish, numbers them gap-free across restarts and never drops silently."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agent.publish.outbox import Outbox, OutboxError, OutboxFull, Retention


def payload(seq: int, msg_id: str) -> dict[str, object]:
    return {"seq": seq, "msg_id": msg_id, "body": "x" * 100}


def test_seq_starts_at_one_and_is_embedded_in_the_payload(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20)
    seqs = [outbox.append("t", payload)[0] for _ in range(5)]
    rows = outbox.pending(limit=10)
    assert seqs == [1, 2, 3, 4, 5]
    assert [json.loads(r.payload)["seq"] for r in rows] == seqs
    assert [json.loads(r.payload)["msg_id"] for r in rows] == [r.msg_id for r in rows]


def test_seq_continues_after_reopen_even_when_everything_was_acked(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    first = Outbox(path, max_bytes=1 << 20)
    for _ in range(3):
        first.append("t", payload)
    first.ack([1, 2, 3])
    first.close()
    second = Outbox(path, max_bytes=1 << 20)
    assert second.depth() == 0
    assert second.append("t", payload)[0] == 4


def test_pending_is_oldest_first_and_ack_removes_only_acked_rows(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20)
    for _ in range(6):
        outbox.append("t", payload)
    assert outbox.ack([2, 4]) == 2
    assert [r.seq for r in outbox.pending(limit=10)] == [1, 3, 5, 6]
    assert [r.seq for r in outbox.pending(limit=2, after_seq=3)] == [5, 6]
    assert outbox.depth() == 4


def test_size_accounting_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path, max_bytes=1 << 20)
    for _ in range(4):
        outbox.append("t", payload)
    outbox.ack([1])
    size, depth = outbox.size_bytes(), outbox.depth()
    outbox.close()
    reopened = Outbox(path, max_bytes=1 << 20)
    assert (reopened.size_bytes(), reopened.depth()) == (size, depth)
    assert size > 0


def test_a_failing_payload_builder_consumes_no_seq(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20)
    outbox.append("t", payload)

    def broken(seq: int, msg_id: str) -> dict[str, object]:
        raise RuntimeError("detector exploded")

    with pytest.raises(OutboxError, match="payload could not be built: RuntimeError"):
        outbox.append("t", broken)
    with pytest.raises(OutboxError, match="seq 2 is not JSON-serialisable"):
        outbox.append("t", lambda seq, msg_id: {"bad": object()})
    assert outbox.append("t", payload)[0] == 2


def test_full_outbox_refuses_new_results_loudly_and_keeps_old_ones(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1000, alarm_fraction=0.5)
    stored = []
    with pytest.raises(OutboxFull, match=r"outbox full: \d+ of 1000 bytes") as refused:
        while True:
            stored.append(outbox.append("cams/cam0/result", payload)[0])
    assert "cams/cam0/result" in str(refused.value)
    assert outbox.refused == 1
    assert outbox.alarm()
    assert [r.seq for r in outbox.pending(limit=100)] == stored  # nothing evicted
    outbox.ack([stored[0]])
    assert outbox.append("t", payload)[0] == stored[-1] + 1  # the refused result left no gap


def test_alarm_clears_when_acks_free_the_budget(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=2000, alarm_fraction=0.5)
    while not outbox.alarm():
        outbox.append("t", payload)
    outbox.ack(r.seq for r in outbox.pending(limit=100))
    assert not outbox.alarm()
    assert outbox.integrity_check() == "ok"


def test_each_alarm_change_is_recorded_in_order_however_fast_results_arrive(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1000, alarm_fraction=0.5)
    for _ in range(3):  # nobody takes the changes in between: the warning must not merge into "full"
        with pytest.raises(OutboxFull):
            while True:
                outbox.append("t", payload)
    changes = outbox.take_alarm_changes()
    assert [(c.active, c.refused) for c in changes] == [(True, 0), (True, 3)]  # the refusals merge into one
    assert changes[0].depth < changes[1].depth == outbox.depth()  # the warning came with room still left
    outbox.ack(r.seq for r in outbox.pending(limit=100))
    assert [(c.active, c.refused, c.depth) for c in outbox.take_alarm_changes()] == [(False, 3, 0)]
    assert outbox.take_alarm_changes() == []


def test_an_outbox_reopened_past_its_alarm_fraction_reports_the_alarm(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    first = Outbox(path, max_bytes=1000, alarm_fraction=0.5)
    while not first.alarm():
        first.append("t", payload)
    first.close()
    changes = Outbox(path, max_bytes=1000, alarm_fraction=0.5).take_alarm_changes()
    assert [(c.active, c.refused, c.depth) for c in changes] == [(True, 0, first.depth())]


def test_unreadable_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match=str(path)):
        Outbox(path, max_bytes=1 << 20)


def test_a_batch_is_stored_in_one_transaction_with_consecutive_seqs(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20)
    outbox.append("t", payload)
    statements: list[str] = []
    outbox._db.set_trace_callback(statements.append)  # one COMMIT = one fsync under synchronous=FULL
    stored = outbox.append_many([("cams/a/result", payload)] * 4)
    assert [s for s, _ in stored] == [2, 3, 4, 5]  # type: ignore[misc]
    assert statements.count("COMMIT") == 1
    assert [r.seq for r in outbox.pending(limit=10)] == [1, 2, 3, 4, 5]


def test_refused_entries_of_a_batch_cost_no_seq_and_the_others_are_stored(tmp_path: Path) -> None:
    probe = Outbox(tmp_path / "probe.sqlite", max_bytes=1 << 20)
    probe.append("t", payload)
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=3 * probe.size_bytes() + 10)  # room for three results

    def not_json(seq: int, msg_id: str) -> dict[str, object]:
        return {"bad": object()}

    def broken(seq: int, msg_id: str) -> dict[str, object]:
        raise ValueError("captured_at has no timezone")

    entries = [("t", payload), ("t", not_json), ("t", payload), ("t", broken), ("t", payload), ("t", payload)]
    stored = outbox.append_many(entries)
    assert isinstance(stored[3], OutboxError) and "could not be built" in str(stored[3])
    del stored[3]
    assert [s[0] for s in (stored[0], stored[2], stored[3])] == [1, 2, 3]  # type: ignore[index]
    assert isinstance(stored[1], OutboxError) and "not JSON-serialisable" in str(stored[1])
    assert isinstance(stored[4], OutboxFull) and "outbox full" in str(stored[4])
    assert outbox.refused == 1
    assert [r.seq for r in outbox.pending(limit=10)] == [1, 2, 3]
    outbox.ack([1])
    assert outbox.append("t", payload)[0] == 4  # still gap-free


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_acked_rows_stay_replayable_and_leave_only_the_pending_budget(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20)
    for _ in range(5):
        outbox.append("cams/cam0/result", payload)
    one_row = outbox.size_bytes() // 5
    assert outbox.ack([2, 3]) == 2
    assert outbox.ack([2]) == 0  # a second PUBACK for a delivered row changes nothing
    assert (outbox.depth(), outbox.size_bytes()) == (3, 3 * one_row)
    assert (outbox.kept(), outbox.kept_bytes()) == (2, 2 * one_row)
    found = outbox.replayable(1, 5)
    assert [r.seq for r in found.rows] == [2, 3]
    assert json.loads(found.rows[0].payload)["seq"] == 2 and found.rows[0].topic == "cams/cam0/result"
    assert found.pending == [1, 4, 5] and found.pruned == []
    assert [r.seq for r in outbox.pending(limit=10)] == [1, 4, 5]


def test_delivered_rows_are_pruned_by_age(tmp_path: Path) -> None:
    clock = FakeClock()
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20, retention=Retention(max_age_s=3600, max_bytes=1 << 20),
                    clock=clock)
    for _ in range(4):
        outbox.append("t", payload)
    outbox.ack([1, 2])
    clock.now += 1800
    outbox.ack([3])
    assert outbox.prune() == 0
    clock.now += 1801  # 1 and 2 are 3601 s old, 3 only 1801 s
    assert outbox.prune() == 2
    found = outbox.replayable(1, 4)
    assert found.pruned == [1, 2] and [r.seq for r in found.rows] == [3] and found.pending == [4]
    assert outbox.kept() == 1 and outbox.depth() == 1


def test_delivered_rows_are_pruned_oldest_first_past_their_byte_budget(tmp_path: Path) -> None:
    probe = Outbox(tmp_path / "probe.sqlite", max_bytes=1 << 20)
    probe.append("t", payload)
    clock = FakeClock()
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20, clock=clock,
                    retention=Retention(max_age_s=3600, max_bytes=3 * probe.size_bytes()))  # room for three rows
    for _ in range(6):
        outbox.append("t", payload)
    for seq in (2, 1, 4, 3):  # delivery order, not seq order, decides what goes first
        clock.now += 1
        outbox.ack([seq])
    found = outbox.replayable(1, 6)
    assert found.pruned == [2] and [r.seq for r in found.rows] == [1, 3, 4] and found.pending == [5, 6]
    assert outbox.kept_bytes() <= 3 * probe.size_bytes()


def test_retained_rows_never_refuse_a_new_result(tmp_path: Path) -> None:
    probe = Outbox(tmp_path / "probe.sqlite", max_bytes=1 << 20)
    probe.append("t", payload)
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=2 * probe.size_bytes())
    for _ in range(10):  # far more than the pending budget, each delivered at once
        seq, _ = outbox.append("t", payload)
        outbox.ack([seq])
    assert outbox.refused == 0 and outbox.kept() == 10 and not outbox.alarm()


def test_counters_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    outbox = Outbox(path, max_bytes=1 << 20)
    for _ in range(4):
        outbox.append("t", payload)
    outbox.ack([1, 3])
    before = (outbox.depth(), outbox.size_bytes(), outbox.kept(), outbox.kept_bytes())
    outbox.close()
    assert (lambda o: (o.depth(), o.size_bytes(), o.kept(), o.kept_bytes()))(Outbox(path, max_bytes=1 << 20)) == before


def test_an_outbox_from_before_retention_is_migrated_with_its_rows_pending(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, msg_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL,
                             payload BLOB NOT NULL, size INTEGER NOT NULL);
        INSERT INTO meta VALUES ('next_seq', 8);
        INSERT INTO outbox VALUES (6, 'a6', 't', X'7B7D', 68), (7, 'a7', 't', X'7B7D', 68);
    """)
    old.commit()
    old.close()
    outbox = Outbox(path, max_bytes=1 << 20)
    assert [r.seq for r in outbox.pending(limit=10)] == [6, 7] and outbox.size_bytes() == 136
    outbox.ack([6])
    assert [r.seq for r in outbox.replayable(6, 7).rows] == [6]
    assert outbox.append("t", payload)[0] == 8
    assert outbox.integrity_check() == "ok"


def test_since_reads_pending_and_delivered_rows_alike_for_a_second_consumer(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20)
    for _ in range(4):
        outbox.append("cams/cam0/result", payload)
    outbox.ack([1, 3])  # delivered over MQTT, still kept for replay
    assert [r.seq for r in outbox.since(0, 10)] == [1, 2, 3, 4]
    assert [r.seq for r in outbox.since(1, 2)] == [2, 3]
    assert [r.seq for r in outbox.pending(10)] == [2, 4]  # the MQTT side's view is unchanged
