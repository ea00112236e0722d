"""The result payload: a replayed result stays valid under the shipped schema and is flagged."""

from __future__ import annotations

import json
import time

import jsonschema

from agent.detections import Detections
from agent.publish.result import as_replay, build_result, result_schema


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
