"""The audit log: who did what through the station, one JSON object per line, appended to a file in the state dir.

Every line has `when` (RFC 3339, UTC), `who`, `role`, `action` and `target`, plus the action's own details. The
optional `on_entry` callback receives the same dict; the daemon publishes it as an MQTT event. Nothing secret ever
goes in (logins record the name tried, never the password).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from agent.statedir import StateDir

TAIL_BYTES = 1024 * 1024
AuditCallback = Callable[[dict[str, Any]], None]
log = structlog.get_logger("agent.station.audit")


def rfc3339_utc(moment: datetime | None = None) -> str:
    """`2025-01-31T12:00:00.123Z`: UTC, millisecond precision."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Appends entries to `path` (created with its folder on first use); safe to call from any thread."""

    def __init__(self, path: Path, on_entry: AuditCallback | None = None) -> None:
        self.path = Path(path)
        self.on_entry = on_entry
        self._lock = threading.Lock()

    @classmethod
    def in_state_dir(cls, state_dir: Path, on_entry: AuditCallback | None = None) -> AuditLog:
        return cls(StateDir(state_dir).audit_log, on_entry)

    def record(self, who: str | None, role: str | None, action: str, target: str | None = None,
               **details: Any) -> dict[str, Any]:
        """Append one entry (fsynced: an audit line must survive a power cut) and hand it to the callback."""
        entry = {"when": rfc3339_utc(), "who": who, "role": role, "action": action, "target": target, **details}
        line = json.dumps(entry, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
        self._notify(entry)
        return entry

    def tail(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last `limit` entries, oldest first, read from the file's last MiB (a line that does not parse is
        skipped)."""
        with self._lock:
            if not self.path.is_file():
                return []
            with self.path.open("rb") as file:
                start = max(0, file.seek(0, os.SEEK_END) - TAIL_BYTES)
                file.seek(start)
                lines = file.read().decode("utf-8", errors="replace").splitlines()
        entries = []
        for line in lines[1 if start else 0:][-limit:]:  # the first line of a partial read may be cut
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return entries

    def _notify(self, entry: dict[str, Any]) -> None:
        if self.on_entry is None:
            return
        try:
            self.on_entry(dict(entry))
        except Exception as exc:  # publishing is best effort: the file already holds the entry
            log.warning("audit callback failed", action=entry["action"], error=str(exc))
