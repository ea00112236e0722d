"""`{prefix}/{device}/events` messages: one builder for the daemon and the recalibration run alike.

Every event is `{"event": kind, "ts": RFC 3339 UTC with milliseconds, "device": device_id, ...fields}`; the kinds
and their fields are listed in docs/mqtt.md.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from agent.publish.result import rfc3339


def now_rfc3339() -> str:
    """Now as `2025-01-31T12:00:00.123Z`, the timestamp format of every payload (docs/mqtt.md)."""
    return rfc3339(datetime.now(timezone.utc))


def build_event(kind: str, device: str, **fields: Any) -> dict[str, Any]:
    """An event payload stamped now; `fields` follow the three common keys."""
    return {"event": kind, "ts": now_rfc3339(), "device": device, **fields}


def encode_event(kind: str, device: str, **fields: Any) -> bytes:
    """`build_event` as JSON bytes; values JSON does not know (paths, enums) are written as strings."""
    return json.dumps(build_event(kind, device, **fields), default=str).encode()
