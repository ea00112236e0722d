"""Event payloads: `{"event", "ts" (RFC 3339 UTC, milliseconds), "device", ...fields}` as docs/mqtt.md says."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent.publish.events import build_event, encode_event, now_rfc3339

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_an_event_has_kind_ts_device_then_its_fields() -> None:
    event = build_event("model_changed", "box1", previous="m", model="m+v0002")
    assert list(event) == ["event", "ts", "device", "previous", "model"]
    assert RFC3339_MS.match(event["ts"]) and event["device"] == "box1"


def test_encoded_events_write_paths_as_strings() -> None:
    decoded = json.loads(encode_event("recalibration_finished", "box1", report=Path("/r/report.json")))
    assert decoded["report"] == "/r/report.json" and RFC3339_MS.match(decoded["ts"])
    assert RFC3339_MS.match(now_rfc3339())
