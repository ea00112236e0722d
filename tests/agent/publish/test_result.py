"""The result payload: `edge-inspect.result/1` as before unless a picture, uncertain boxes or the replay flag are
added, and every shape valid against the shipped schema."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import jsonschema
import numpy as np
import pytest

from agent.decide import Thresholds, decide
from agent.detections import Detections
from agent.publish.result import as_replay, build_result, result_schema, uncertain_boxes

CLASSES = ("scratch", "hole")
THRESHOLDS = Thresholds({"scratch": 0.5, "hole": 0.7}, band=0.1)
V1_KEYS = {"schema", "msg_id", "seq", "device", "camera", "frame_id", "part_id", "captured_at", "model", "verdict",
           "defects", "latency_ms"}


def boxes(labels: list[str], scores: list[float]) -> Detections:
    xyxy = [[10 * i, 0, 10 * i + 8, 8] for i in range(len(labels))]
    return Detections.from_labels(labels, np.asarray(xyxy).reshape(-1, 4), CLASSES, (100, 50), score=scores)


def payload(dets: Detections, **optional: Any) -> dict[str, Any]:
    decision = decide(dets, THRESHOLDS)
    return build_result(seq=1, msg_id="m1", device="box1", camera="cam0", frame_id=3, part_id=None,
                        captured_at=datetime(2025, 1, 31, tzinfo=timezone.utc), model="tiny", verdict=decision.verdict,
                        detections=decision.defects, latency_ms=4.0, **optional)


def test_without_a_picture_or_uncertain_boxes_the_payload_has_exactly_the_v1_fields() -> None:
    plain = payload(boxes(["hole"], [0.95]))
    assert set(plain) == V1_KEYS and plain["schema"] == "edge-inspect.result/1"
    jsonschema.validate(plain, result_schema())


def test_uncertain_boxes_name_the_boxes_in_the_band_and_flag_those_below_their_threshold() -> None:
    dets = boxes(["scratch", "hole", "hole"], [0.45, 0.75, 0.2])  # 0.2 hole: far below, not a reason
    decision = decide(dets, THRESHOLDS)
    assert decision.verdict == "uncertain"
    flagged = uncertain_boxes(decision, THRESHOLDS)
    assert flagged is not None
    assert [(b["label"], b["score"], b["threshold"], b["below_threshold"]) for b in flagged] == [
        ("scratch", 0.45, 0.5, True), ("hole", 0.75, 0.7, False)]
    result = payload(dets, uncertain_boxes=flagged, image_url="http://box1:8080/api/pictures/x.jpg")
    assert [d["label"] for d in result["defects"]] == ["hole"]  # defects keep their meaning: above threshold only
    jsonschema.validate(result, result_schema())


@pytest.mark.parametrize("scores", [[0.95], [0.1], []])
def test_fail_and_pass_results_carry_no_uncertain_boxes(scores: list[float]) -> None:
    assert uncertain_boxes(decide(boxes(["hole"] * len(scores), scores), THRESHOLDS), THRESHOLDS) is None


def test_the_schema_refuses_an_image_url_that_is_not_http() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload(boxes([], []), image_url="file:///etc/passwd"), result_schema())



def stored_payload() -> bytes:
    result = build_result(seq=7, msg_id="abc", device="box1", camera="cam0", frame_id=3, part_id=None,
                          captured_at=time.time(), model="tiny@1", verdict="pass",
                          detections=Detections.empty(["scratch"], (64, 64)), latency_ms=1.0)
    return json.dumps(result).encode()


def test_a_replayed_result_is_flagged_keeps_its_identity_and_matches_the_schema() -> None:
    stored = stored_payload()
    original, replayed = json.loads(stored), json.loads(as_replay(stored))
    assert replayed == {**original, "replay": True}
    jsonschema.validate(replayed, result_schema())
    jsonschema.validate(original, result_schema())  # the flag is optional: first deliveries are unchanged


def test_a_payload_that_is_not_a_json_object_is_replayed_unchanged() -> None:
    assert as_replay(b"\x00binary") == b"\x00binary"
    assert as_replay(b"[1, 2]") == b"[1, 2]"
