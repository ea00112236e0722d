"""The outbox stores every result before publish, numbers them gap-free across restarts and never drops silently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.publish.outbox import Outbox, OutboxError, OutboxFull


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
