"""The result payload: `edge-inspect.result/1` as before unless a picture, uncertain boxes or the replay flag are
added, and every shape valid against the shipped schema."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from agent.decide import Thresholds, decide
from agent.detections import Detections
from agent.measure import SizeRule, box_sizes
from agent.publish.result import as_replay, build_result, result_schema, uncertain_boxes, undersized_boxes
from tests.fixtures.geometry import flat_geometry

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


SIZED = Thresholds({"scratch": 0.5, "hole": 0.7}, band=0.1, size_rules={"scratch": SizeRule(min_length_mm=2.0)})


def sized_payload(dets: Detections, thresholds: Thresholds = SIZED) -> dict[str, Any]:
    """A payload as the daemon builds it for a camera with a 0.1 mm/px geometry."""
    geometry = flat_geometry(0.1, image_size=(100, 50))
    decision = decide(dets, thresholds, box_sizes(geometry, dets))
    return build_result(seq=1, msg_id="m1", device="box1", camera="cam0", frame_id=3, part_id=None,
                        captured_at=time.time(), model="tiny", verdict=decision.verdict,
                        detections=decision.defects, latency_ms=4.0, geometry=geometry,
                        uncertain_boxes=uncertain_boxes(decision, thresholds, geometry),
                        undersized_boxes=undersized_boxes(decision, thresholds, geometry))


def test_with_a_geometry_every_published_box_carries_its_size_and_area() -> None:
    dets = Detections.from_labels(["hole", "scratch"], [[0, 0, 20, 10], [30, 0, 60, 4]], CLASSES, (100, 50),
                                  score=[0.95, 0.45])
    result = sized_payload(dets, Thresholds({"scratch": 0.5, "hole": 0.7}, band=0.1))
    assert result["defects"][0] == {"label": "hole", "score": 0.95, "box": [0.0, 0.0, 20.0, 10.0],
                                         "box_norm": [0.0, 0.0, 0.2, 0.2], "size_mm": [2.0, 1.0], "area_mm2": 2.0}
    result = sized_payload(dets[1:], Thresholds({"scratch": 0.5, "hole": 0.7}, band=0.1))
    assert result["verdict"] == "uncertain"
    assert result["uncertain_boxes"][0]["size_mm"] == [3.0, 0.4] and result["uncertain_boxes"][0]["area_mm2"] == 1.2
    jsonschema.validate(result, result_schema())


def test_a_box_below_its_size_rule_is_published_as_undersized_not_as_a_defect() -> None:
    dets = Detections.from_labels(["scratch", "scratch"], [[0, 0, 15, 2], [0, 10, 40, 12]], CLASSES, (100, 50),
                                  score=[0.9, 0.9])  # 1.5 mm and 4 mm long
    result = sized_payload(dets)
    assert result["verdict"] == "fail" and [d["size_mm"] for d in result["defects"]] == [[4.0, 0.2]]
    assert result["undersized_boxes"] == [{"label": "scratch", "score": 0.9, "box": [0.0, 0.0, 15.0, 2.0],
                                           "box_norm": [0.0, 0.0, 0.15, 0.04], "size_mm": [1.5, 0.2],
                                           "area_mm2": 0.3, "size_rule": {"min_length_mm": 2.0}}]
    jsonschema.validate(result, result_schema())
    only_small = sized_payload(dets[:1])
    assert only_small["verdict"] == "pass" and only_small["defects"] == [] and len(only_small["undersized_boxes"]) == 1
    jsonschema.validate(only_small, result_schema())


def test_the_schema_refuses_a_size_that_is_not_a_length_and_a_width() -> None:
    result = sized_payload(Detections.from_labels(["hole"], [[0, 0, 20, 10]], CLASSES, (100, 50), score=[0.95]))
    result["defects"][0]["size_mm"] = [2.0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(result, result_schema())


def test_the_result_examples_in_docs_mqtt_md_are_valid() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "mqtt.md").read_text()
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", doc, re.S)]
    results = [e for e in examples if e.get("schema") == "edge-inspect.result/1"]
    assert len(results) >= 3 and any("undersized_boxes" in r for r in results)
    for result in results:
        jsonschema.validate(result, result_schema())



def test_the_schema_file_names_each_key_once() -> None:
    """json.load keeps the last of two equal keys silently: a merged schema could lose a whole `$defs` block."""
    import json
    from pathlib import Path

    import agent.publish

    def refuse_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}"
        return dict(pairs)

    json.loads((Path(agent.publish.__file__).parent / "result.schema.json").read_text(),
               object_pairs_hook=refuse_duplicates)
