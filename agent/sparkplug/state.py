"""What the edge node keeps across restarts, in `{state_dir}/sparkplug.json` (written atomically):

- `bdseq`: the bdSeq of the will on our latest MQTT CONNECT. The next CONNECT (a reconnect or a restart) uses the
  next value, 0-255 wrapping, so a late NDEATH of an earlier session never matches the current NBIRTH.
- `cursor`: the highest outbox seq the broker surely has (agent/sparkplug/feed.py); after a restart the results
  after it are sent again, so none is lost and at most a few are sent twice (`Inspection/Result Seq` tells).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.store.files import write_json_atomic

log = structlog.get_logger("agent.sparkplug")

BDSEQ_MODULO = 256


@dataclass
class NodeState:
    bdseq: int | None  # None: this box never connected as an edge node
    cursor: int | None  # None: start from the outbox's newest result (the history is not sent)


def load_state(path: Path) -> NodeState:
    """The stored state; a missing file is a first start, an unreadable one is set aside (logged) and starts fresh."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return NodeState(_number(data, "bdseq", BDSEQ_MODULO - 1), _number(data, "cursor", None))
    except FileNotFoundError:
        return NodeState(None, None)
    except (OSError, ValueError, TypeError) as exc:
        aside = path.with_name(path.name + ".corrupt")
        path.replace(aside)
        log.error("sparkplug state unreadable, set aside; bdSeq restarts at 0 and only new results are sent",
                  path=str(path), moved_to=str(aside), error=str(exc))
        return NodeState(None, None)


def _number(data: dict[str, object], key: str, highest: int | None) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (highest is not None and value > highest):
        raise ValueError(f"{key} is {value!r}, not an integer in 0..{highest if highest is not None else 'any'}")
    return value


def save_state(path: Path, state: NodeState) -> None:
    write_json_atomic(path, {"bdseq": state.bdseq, "cursor": state.cursor})


def next_bdseq(previous: int | None) -> int:
    """The bdSeq after `previous` (0 on the very first connect)."""
    return 0 if previous is None else (previous + 1) % BDSEQ_MODULO
