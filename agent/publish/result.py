"""The result message (`edge-inspect.result/1`): one inspected frame, as published on `cameras/{camera}/result`.

`result.schema.json` beside this module is the contract; `build_result` is the only place payloads are made. With
the camera's geometry (agent/geometry.py) every published box also carries `size_mm` and `area_mm2` on the belt plane
(agent/measure.py); without one the boxes are exactly as before.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from agent.decide import Decision, Thresholds
from agent.detections import Detections
from agent.measure import PlaneMap, box_sizes

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
    undersized_boxes: list[dict[str, Any]] | None = None,
    geometry: PlaneMap | None = None,
) -> dict[str, Any]:
    """The result payload; `captured_at` is an aware datetime or a Unix timestamp (seconds). The optional fields
    (`image_url`, `uncertain_boxes`, `undersized_boxes`) are left out when None, so a result without them reads as
    before; `geometry` (the camera's, for this frame's size) adds each defect's size in mm."""
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
        "defects": boxes_json(detections, geometry),
        "latency_ms": round(max(latency_ms, 0.0), 3),
    }
    optional = {"image_url": image_url, "uncertain_boxes": uncertain_boxes, "undersized_boxes": undersized_boxes}
    return payload | {key: value for key, value in optional.items() if value is not None}


def boxes_json(dets: Detections, geometry: PlaneMap | None = None) -> list[dict[str, Any]]:
    """`Detections.to_json`, each box with its `size_mm` and `area_mm2` when there is a geometry."""
    boxes = dets.to_json()
    if geometry is None:
        return boxes
    return [box | size.to_json() for box, size in zip(boxes, box_sizes(geometry, dets), strict=True)]


def uncertain_boxes(decision: Decision, thresholds: Thresholds, geometry: PlaneMap | None = None
                    ) -> list[dict[str, Any]] | None:
    """For an `uncertain` verdict, the boxes that made it so (within the band of their class threshold), each with
    that `threshold` and whether it is `below_threshold` (such a box is not in `defects`); None for other verdicts."""
    if decision.verdict != "uncertain":
        return None
    boxes, limits = decision.uncertain, thresholds.for_detections(decision.uncertain)
    return [box | {"threshold": round(float(limit), 4), "below_threshold": bool(score < limit)}
            for box, score, limit in zip(boxes_json(boxes, geometry), boxes.score, limits, strict=True)]


def undersized_boxes(decision: Decision, thresholds: Thresholds, geometry: PlaneMap | None
                     ) -> list[dict[str, Any]] | None:
    """The boxes that reached their score threshold but not their class's size rule (so not in `defects`), each with
    its size and that `size_rule`; None when there are none."""
    boxes = decision.undersized
    if len(boxes) == 0:
        return None
    rules = [thresholds.size_rules[label].to_json() for label in boxes.labels]
    return [box | {"size_rule": rule} for box, rule in zip(boxes_json(boxes, geometry), rules, strict=True)]


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
