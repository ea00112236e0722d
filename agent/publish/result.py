"""The result message (`edge-inspect.result/1`): one inspected frame, as published on `cameras/{camera}/result`.

`result.schema.json` beside this module is the contract; `build_result` is the only place payloads are made.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from agent.decide import Decision, Thresholds
from agent.detections import Detections

RESULT_SCHEMA_ID = "edge-inspect.result/1"
Verdict = Literal["pass", "fail", "uncertain"]


def build_result(
    *,
    seq: int,
    msg_id: str,
    device: str,
    camera: str,
    frame_id: int,
    part_id: str | None,
    captured_at: datetime | float,
    model: str,
    verdict: Verdict,
    detections: Detections,
    latency_ms: float,
    image_url: str | None = None,
    uncertain_boxes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The result payload; `captured_at` is an aware datetime or a Unix timestamp (seconds). The optional fields
    (`image_url`, `uncertain_boxes`) are left out when None, so a result without them reads as before."""
    payload = {
        "schema": RESULT_SCHEMA_ID,
        "msg_id": msg_id,
        "seq": seq,
        "device": device,
        "camera": camera,
        "frame_id": frame_id,
        "part_id": part_id,
        "captured_at": rfc3339(captured_at),
        "model": model,
        "verdict": verdict,
        "defects": detections.to_json(),
        "latency_ms": round(max(latency_ms, 0.0), 3),
    }
    optional = {"image_url": image_url, "uncertain_boxes": uncertain_boxes}
    return payload | {key: value for key, value in optional.items() if value is not None}


def uncertain_boxes(decision: Decision, thresholds: Thresholds) -> list[dict[str, Any]] | None:
    """For an `uncertain` verdict, the boxes that made it so (within the band of their class threshold), each with
    that `threshold` and whether it is `below_threshold` (such a box is not in `defects`); None for other verdicts."""
    if decision.verdict != "uncertain":
        return None
    boxes, limits = decision.uncertain, thresholds.for_detections(decision.uncertain)
    return [box | {"threshold": round(float(limit), 4), "below_threshold": bool(score < limit)}
            for box, score, limit in zip(boxes.to_json(), boxes.score, limits, strict=True)]


def as_replay(payload: bytes) -> bytes:
    """A stored result payload flagged `"replay": true` (sent again on `cmd/replay`); bytes that are not a JSON
    object go out unchanged (the MQTT user property `replay=true` still flags them)."""
    try:
        result = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(result, dict):
        return payload
    return json.dumps({**result, "replay": True}, separators=(",", ":")).encode()


def rfc3339(moment: datetime | float) -> str:
    """UTC RFC 3339 with milliseconds, e.g. 2025-01-31T12:00:00.123Z (naive datetimes are refused)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"captured_at {moment!r} has no timezone; pass an aware datetime or a Unix timestamp")
        when = moment.astimezone(timezone.utc)
    else:
        when = datetime.fromtimestamp(moment, tz=timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=1)
def result_schema() -> dict[str, Any]:
    """The JSON Schema of result payloads, as shipped in the package."""
    text = resources.files("agent.publish").joinpath("result.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
