"""`cmd/replay {from_seq, to_seq}`: send delivered results again, for a consumer that saw a gap in `seq`.

The broker can lose a result after its PUBACK (a Mosquitto SIGKILLed before it persisted the message), so the outbox
keeps delivered results for a retention window (`outbox.retention_hours`, `outbox.retention_max_bytes`). A replay
publishes the kept ones of the range again on their own result topics, oldest first, each flagged `"replay": true`
(and the MQTT v5 user property `replay=true`), with its original `msg_id` and `seq`. The reply says what could not be
sent: seqs still pending (they are on their way anyway), seqs already pruned (gone for good), and `last_seq`, the
newest seq allocated (a range past it is cut there, not refused). docs/mqtt.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.control.commands import ReplayCommand
from agent.publish.outbox import Outbox, OutboxRow


def replay_results(outbox: Outbox, send: Callable[[OutboxRow], None], cmd: ReplayCommand) -> dict[str, Any]:
    """Hand the kept results of the range to `send`, oldest first; the reply fields say what was and was not sent."""
    last = outbox.last_seq()
    # seqs past the last one do not exist yet: nothing to send, and `last_seq` tells a consumer whether it has
    # missed the newest results (a loss at the tail shows no gap until the next result arrives)
    found = outbox.replayable(cmd.from_seq, min(cmd.to_seq, last))
    for row in found.rows:
        send(row)
    return {"from_seq": cmd.from_seq, "to_seq": cmd.to_seq, "replayed": len(found.rows),
            "pending": as_ranges(found.pending), "pruned": as_ranges(found.pruned), "last_seq": last}


def as_ranges(seqs: list[int]) -> list[list[int]]:
    """Sorted seqs as inclusive [first, last] runs: [1, 2, 3, 7] -> [[1, 3], [7, 7]] (a short reply for long gaps)."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return runs
