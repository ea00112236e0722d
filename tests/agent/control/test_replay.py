"""`cmd/replay`: validated ranges, kept results sent again oldest first, and a reply that says what was not sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.control.commands import CommandRequest, CommandRouter
from agent.control.replay import as_ranges, replay_results
from agent.publish.outbox import Outbox, OutboxRow, Retention

BASE = "edge-inspect/box1"


def result(seq: int, msg_id: str) -> dict[str, object]:
    return {"seq": seq, "msg_id": msg_id}


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    """Seqs 1-10 stored; 1-8 delivered; then 1-2 pruned (their deliveries are the oldest, over the byte budget)."""
    box = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20, retention=Retention(max_bytes=1 << 20))
    for _ in range(10):
        box.append(f"{BASE}/cameras/cam0/result", result)
    box.ack(range(1, 9))
    box.retention = Retention(max_bytes=box.kept_bytes() * 6 // 8)
    box.prune()
    return box


def router_for(outbox: Outbox, sent: list[OutboxRow]) -> CommandRouter:
    router = CommandRouter(reply=lambda *a: None, default_reply_topic=f"{BASE}/replies")
    router.register("replay", lambda cmd: replay_results(outbox, sent.append, cmd))
    return router


def replay(router: CommandRouter, payload: object) -> dict[str, object]:
    raw = json.dumps(payload).encode()
    reply = router.handle(CommandRequest(verb="replay", topic=f"{BASE}/cmd/replay", payload=raw))
    assert reply is not None
    return reply


def test_replay_sends_the_kept_results_oldest_first_and_names_the_rest(outbox: Outbox) -> None:
    sent: list[OutboxRow] = []
    reply = replay(router_for(outbox, sent), {"from_seq": 1, "to_seq": 10})
    assert [row.seq for row in sent] == [3, 4, 5, 6, 7, 8]
    assert json.loads(sent[0].payload) == {"seq": 3, "msg_id": sent[0].msg_id}
    assert reply == {"ok": True, "verb": "replay", "from_seq": 1, "to_seq": 10, "replayed": 6,
                     "pending": [[9, 10]], "pruned": [[1, 2]], "last_seq": 10}


@pytest.mark.parametrize(("payload", "field", "why"), [
    ({"from_seq": 5, "to_seq": 3}, "to_seq", "must be >= from_seq (5)"),
    ({"from_seq": 1, "to_seq": 1001}, "to_seq", "at most 1000 per replay"),
    ({"from_seq": 0, "to_seq": 3}, "from_seq", "greater than or equal to 1"),
    ({"from_seq": "1", "to_seq": 3}, "from_seq", "valid integer"),
    ({"to_seq": 3}, "from_seq", "Field required"),
    ({"from_seq": 1, "to_seq": 3, "camera": "cam0"}, "camera", "Extra inputs are not permitted"),
])
def test_a_malformed_range_is_refused_naming_the_field_and_sends_nothing(
    outbox: Outbox, payload: dict[str, object], field: str, why: str
) -> None:
    sent: list[OutboxRow] = []
    reply = replay(router_for(outbox, sent), payload)
    assert reply["ok"] is False and sent == []
    assert f"{field}: " in str(reply["error"]) and why in str(reply["error"])


def test_a_range_past_the_newest_seq_is_cut_there_and_the_reply_names_the_newest(outbox: Outbox) -> None:
    sent: list[OutboxRow] = []
    reply = replay(router_for(outbox, sent), {"from_seq": 8, "to_seq": 500})
    assert [row.seq for row in sent] == [8]
    assert (reply["pending"], reply["pruned"], reply["last_seq"]) == ([[9, 10]], [], 10)
    assert replay(router_for(outbox, sent), {"from_seq": 11, "to_seq": 20})["replayed"] == 0


def test_as_ranges_compresses_runs() -> None:
    assert as_ranges([1, 2, 3, 7, 9, 10]) == [[1, 3], [7, 7], [9, 10]]
    assert as_ranges([]) == []
