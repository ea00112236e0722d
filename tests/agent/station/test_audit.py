"""The audit log: one JSON line per entry (who, role, action, target, when in RFC 3339 UTC), plus a callback."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent.statedir import AUDIT_FILE
from agent.station.audit import AuditLog, rfc3339_utc

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_entries_are_appended_as_json_lines_in_the_state_dir(tmp_path: Path) -> None:
    audit = AuditLog.in_state_dir(tmp_path / "state")
    audit.record("tech", "technician", "login", client="10.0.0.7")
    audit.record("tech", "technician", "promote", target="v0004", reason="better")
    lines = [json.loads(line) for line in (tmp_path / "state" / AUDIT_FILE).read_text().splitlines()]
    assert [(e["who"], e["role"], e["action"], e["target"]) for e in lines] == [
        ("tech", "technician", "login", None), ("tech", "technician", "promote", "v0004")]
    assert lines[0]["client"] == "10.0.0.7" and lines[1]["reason"] == "better"
    assert all(RFC3339_UTC.match(e["when"]) for e in lines)


def test_the_callback_gets_each_entry_and_its_failure_is_not_the_callers(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    audit = AuditLog(tmp_path / AUDIT_FILE, on_entry=seen.append)
    entry = audit.record("view", "viewer", "logout")
    assert seen == [entry]

    def broken(_entry: dict[str, Any]) -> None:
        raise ConnectionError("broker down")

    AuditLog(tmp_path / AUDIT_FILE, on_entry=broken).record("view", "viewer", "login")
    assert len((tmp_path / AUDIT_FILE).read_text().splitlines()) == 2


def test_tail_returns_the_last_entries_oldest_first(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / AUDIT_FILE)
    assert audit.tail() == []
    for i in range(5):
        audit.record("tech", "technician", "review", target=f"frame-{i}")
    with audit.path.open("a") as file:
        file.write("not json\n")
    assert [e["target"] for e in audit.tail(3)] == ["frame-3", "frame-4"]


def test_rfc3339_utc_converts_to_utc() -> None:
    moment = datetime(2025, 3, 1, 14, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339_utc(moment) == "2025-03-01T12:30:05.123Z"
