"""The review API: queue order, entry detail, frame, saving reviews (audited), the golden toggle, the summary, and the
refusal of malformed boxes (each a 4xx naming the field, changing nothing)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agent.detector.tasks import GROUNDING, Region, TaskUnsupported, run_task_on
from agent.learn.queue import LearningQueue
from agent.learn.uncertainty import most_unsure_first, unsure_and_varied_first
from agent.station.guards import MAX_BODY_BYTES
from tests.agent.station.conftest import Station, fill_queue, make_station, scratch_at


def queue_of(station: Station) -> LearningQueue:
    assert station.queue is not None
    return station.queue


def save(station: Station, entry_id: int, body: Any) -> Any:
    return station.client.post(f"/api/review/entries/{entry_id}", json=body, headers=station.csrf())


def test_the_queue_comes_most_unsure_first(reviewing: Station) -> None:
    reviewing.login("tech")
    body = reviewing.client.get("/api/review/entries").json()
    assert body["status"] == "new" and body["total"] == 3
    assert [(e["id"], e["margin"]) for e in body["entries"]] == [(2, 0.02), (3, 0.2), (1, 0.4)]
    assert reviewing.client.get("/api/review/entries?limit=1").json()["entries"][0]["id"] == 2
    bad = reviewing.client.get("/api/review/entries?status=done")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"


def test_the_queue_can_come_unsure_and_varied_starting_unlike_the_frames_reviewed(tmp_path: Path) -> None:
    scores = [0.52, 0.51, 0.45, 0.6, 0.3, 0.55]
    queue = fill_queue(tmp_path / "queue", [scratch_at(s) for s in scores], review_order="unsure-varied")
    station = make_station(tmp_path, queue=queue)
    with station.client:
        station.login("tech")
        body = station.client.get("/api/review/entries").json()
        assert body["order"] == "unsure-varied" and body["total"] == 6
        expected = [e.id for e in unsure_and_varied_first(queue.list(status="new"))]
        assert [e["id"] for e in body["entries"]] == expected
        assert expected != [e.id for e in most_unsure_first(queue.list(status="new"))]  # the order differs here
        assert save(station, expected[0], {"action": "accept"}).status_code == 200
        again = [e["id"] for e in station.client.get("/api/review/entries").json()["entries"]]
        assert queue.reviewed_hashes(besides="new") == [queue.get(expected[0]).dhash]
        assert queue.reviewed_hashes(besides="labelled") == []  # the one reviewed frame is in that list
        left, reviewed = queue.list(status="new"), [queue.get(expected[0]).dhash]
        assert again == [e.id for e in unsure_and_varied_first(left, reviewed=reviewed)]
    queue.close()


def test_an_entry_shows_suggestions_labels_review_facts_and_golden(reviewing: Station) -> None:
    reviewing.login("tech")
    entry = reviewing.client.get("/api/review/entries/2").json()
    assert (entry["width"], entry["height"], entry["class_names"]) == (320, 240, ["scratch", "hole", "stain"])
    assert entry["suggestions"] == [{"label": "scratch", "score": 0.52, "threshold": 0.5,
                                     "box": [40.0, 50.0, 120.0, 110.0]}]
    assert entry["labels"] is None and entry["review"] == {"verified": False, "reviewer": None, "reviewed_at": None}
    assert (entry["golden"], entry["golden_manual"]) == (False, False)
    assert entry["image"] == "/api/review/entries/2/frame.png"
    missing = reviewing.client.get("/api/review/entries/99")
    assert missing.status_code == 404 and "no queue entry with id 99" in missing.json()["detail"]


def test_the_frame_is_the_stored_png(reviewing: Station) -> None:
    reviewing.login("tech")
    response = reviewing.client.get("/api/review/entries/1/frame.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and np.array_equal(image, queue_of(reviewing).image(1))


def test_accept_stores_the_suggestions_as_verified_labels_and_audits(reviewing: Station) -> None:
    reviewing.login("tech")
    response = save(reviewing, 2, {"action": "accept"})
    assert response.status_code == 200, response.text
    assert response.json()["labels"] == [{"label": "scratch", "box": [40.0, 50.0, 120.0, 110.0]}]
    entry = queue_of(reviewing).get(2)
    assert (entry.status, entry.verified, entry.reviewer) == ("labelled", True, "tech")
    assert entry.labels is not None and entry.labels.score.tolist() == [1.0]
    assert response.json()["review"]["reviewed_at"].endswith("Z")
    (line,) = reviewing.audit_entries("review")
    assert (line["who"], line["role"], line["target"], line["decision"], line["status"], line["boxes"]) == (
        "tech", "technician", "queue entry 2", "accept", "labelled", 1)


@pytest.mark.parametrize(("action", "status", "boxes"), [("no_defect", "labelled", 0), ("reject", "rejected", None)])
def test_no_defect_and_reject(reviewing: Station, action: str, status: str, boxes: int | None) -> None:
    reviewing.login("tech")
    assert save(reviewing, 1, {"action": action}).status_code == 200
    entry = queue_of(reviewing).get(1)
    assert (entry.status, entry.verified, entry.reviewer) == (status, True, "tech")
    assert (None if entry.labels is None else len(entry.labels)) == boxes


def test_explicit_boxes_replace_the_suggestions(reviewing: Station) -> None:
    reviewing.login("tech")
    boxes = [{"label": "hole", "x1": 0, "y1": 0, "x2": 320, "y2": 240}, {"label": "stain", "x1": 5.5, "y1": 6,
                                                                         "x2": 7, "y2": 8.25}]
    assert save(reviewing, 3, {"action": "boxes", "boxes": boxes}).status_code == 200
    labels = queue_of(reviewing).get(3).labels
    assert labels is not None and labels.labels == ["hole", "stain"]
    assert labels.xyxy.tolist() == [[0, 0, 320, 240], [5.5, 6, 7, 8.25]]
    assert save(reviewing, 3, {"action": "boxes", "boxes": []}).json()["labels"] == []  # empty: no defect


BAD_BOXES = [
    ({"label": "scratch", "x1": -1, "y1": 0, "x2": 10, "y2": 10}, "boxes.0.x1"),
    ({"label": "scratch", "x1": 0, "y1": 0, "x2": 321, "y2": 10}, "boxes.0.x2"),
    ({"label": "scratch", "x1": 0, "y1": 0, "x2": 10, "y2": 240.5}, "boxes.0.y2"),
    ({"label": "scratch", "x1": 10, "y1": 0, "x2": 10, "y2": 10}, "boxes.0.x2"),
    ({"label": "scratch", "x1": 0, "y1": 20, "x2": 10, "y2": 5}, "boxes.0.y2"),
    ({"label": "dent", "x1": 0, "y1": 0, "x2": 10, "y2": 10}, "boxes.0.label"),
    ({"label": "", "x1": 0, "y1": 0, "x2": 10, "y2": 10}, "boxes.0.label"),
    ({"label": "scratch", "x1": "a", "y1": 0, "x2": 10, "y2": 10}, "boxes.0.x1"),
    ({"label": "scratch", "y1": 0, "x2": 10, "y2": 10}, "boxes.0.x1"),
    ({"label": "scratch", "x1": 0, "y1": 0, "x2": 10, "y2": 10, "score": 1}, "boxes.0.score"),
]


@pytest.mark.parametrize(("box", "field"), BAD_BOXES)
def test_malformed_boxes_are_refused_naming_the_field_and_change_nothing(reviewing: Station, box: dict[str, Any],
                                                                         field: str) -> None:
    reviewing.login("tech")
    good = {"label": "hole", "x1": 1, "y1": 1, "x2": 5, "y2": 5}
    response = save(reviewing, 2, {"action": "boxes", "boxes": [good, box]})
    assert response.status_code == 422
    assert field.replace("boxes.0", "boxes.1") in [e["field"] for e in response.json()["errors"]], response.json()
    assert_unchanged(reviewing)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused(reviewing: Station, number: str) -> None:
    reviewing.login("tech")
    raw = '{"action": "boxes", "boxes": [{"label": "scratch", "x1": NUMBER, "y1": 0, "x2": 10, "y2": 10}]}'.replace(
        "NUMBER", number)
    response = reviewing.client.post("/api/review/entries/2", content=raw,
                                      headers={**reviewing.csrf(), "Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "boxes.0.x1", response.text
    assert_unchanged(reviewing)


@pytest.mark.parametrize(("body", "field"), [
    ({"action": "boxes"}, "boxes"),
    ({"action": "accept", "boxes": []}, "boxes"),
    ({"action": "approve"}, "action"),
    ({}, "action"),
    ({"action": "boxes", "boxes": [{"label": "scratch", "x1": 0, "y1": 0, "x2": 1, "y2": 1}] * 101}, "boxes"),
    ({"action": "boxes", "boxes": {"label": "scratch"}}, "boxes"),
])
def test_malformed_reviews_are_refused_naming_the_field(reviewing: Station, body: dict[str, Any], field: str) -> None:
    reviewing.login("tech")
    response = save(reviewing, 2, body)
    assert response.status_code == 422 and field in [e["field"] for e in response.json()["errors"]], response.text
    assert_unchanged(reviewing)


def test_a_huge_payload_is_refused_before_it_is_read(reviewing: Station) -> None:
    reviewing.login("tech")
    box = {"label": "scratch", "x1": 0, "y1": 0, "x2": 1, "y2": 1}
    response = save(reviewing, 2, {"action": "boxes", "boxes": [box] * (MAX_BODY_BYTES // 40)})
    assert response.status_code == 413 and "body" in response.json()["detail"]
    assert_unchanged(reviewing)


def assert_unchanged(station: Station) -> None:
    entry = queue_of(station).get(2)
    assert (entry.status, entry.labels, entry.verified) == ("new", None, False)
    assert station.audit_entries("review") == []


def test_the_golden_toggle_overrides_and_resets(reviewing: Station) -> None:
    reviewing.login("tech")

    def set_golden(value: Any) -> Any:
        return reviewing.client.put("/api/review/entries/1/golden", json={"golden": value}, headers=reviewing.csrf())

    assert set_golden(True).json()["golden"] is True and queue_of(reviewing).get(1).golden_manual
    reset = set_golden(None).json()  # back to the hash: with a golden fraction of 0, training
    assert (reset["golden"], reset["golden_manual"]) == (False, False)
    bad = set_golden("yes please")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "golden"
    assert [(e["golden"], e["split"]) for e in reviewing.audit_entries("golden")] == [
        (True, "golden"), (None, "training")]


def test_summary_counts_statuses_and_classes_per_set(reviewing: Station) -> None:
    reviewing.login("tech")
    save(reviewing, 1, {"action": "accept"})
    save(reviewing, 2, {"action": "reject"})
    reviewing.client.put("/api/review/entries/1/golden", json={"golden": True}, headers=reviewing.csrf())
    summary = reviewing.client.get("/api/review/summary").json()
    assert summary["statuses"] == {"new": 1, "labelled": 1, "rejected": 1, "verified": 2, "unverified_labelled": 0}
    assert summary["golden"]["frames_with"] == {"scratch": 1, "hole": 0, "stain": 0}
    assert summary["training"]["frames"] == 0 and summary["golden_fraction"] == 0.0


def test_viewers_may_not_review(reviewing: Station) -> None:
    reviewing.login("view")
    assert reviewing.client.get("/api/review/entries").status_code == 403
    assert save(reviewing, 2, {"action": "accept"}).status_code == 403
    assert_unchanged(reviewing)


def test_without_a_queue_the_review_api_says_so(tmp_path: Path) -> None:
    made = make_station(tmp_path)
    made.login("tech")
    response = made.client.get("/api/review/entries")
    assert response.status_code == 503 and "learning queue" in response.json()["detail"]


# ----- "find the ...": phrase grounding on an entry's frame ----------------------------------------------------------
def ground(station: Station, entry_id: int, body: Any, csrf: bool = True) -> Any:
    headers = station.csrf() if csrf else {}
    return station.client.post(f"/api/review/entries/{entry_id}/ground", json=body, headers=headers)


def test_grounding_answers_the_served_models_boxes_for_the_entrys_frame_and_stores_nothing(
        reviewing: Station) -> None:
    asked: list[tuple[np.ndarray, str, str]] = []

    def grounder(frame: np.ndarray, phrase: str) -> list[Region]:
        asked.append((frame, phrase, threading.current_thread().name))
        return [Region(phrase, (10.04, 20.0, 60.0, 80.0), 0.61234)]

    reviewing.backend.grounder = grounder
    reviewing.login("tech")
    response = ground(reviewing, 2, {"phrase": "  dark scratch "})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["entry"] == 2 and body["phrase"] == "dark scratch" and body["model"] == "base+v0003"
    assert body["regions"] == [{"label": "dark scratch", "box": [10.0, 20.0, 60.0, 80.0], "score": 0.6123}]
    ((frame, phrase, thread),) = asked
    assert np.array_equal(frame, queue_of(reviewing).image(2)) and phrase == "dark scratch"
    assert thread.startswith("station-ground")  # never the request's own thread, never inspection's
    assert_unchanged(reviewing)
    assert [json.loads(line)["action"] for line in reviewing.audit_lines()] == ["login"]


def test_only_a_technician_with_the_csrf_token_may_ground(reviewing: Station) -> None:
    reviewing.backend.grounder = lambda frame, phrase: []
    reviewing.login("tech")
    assert ground(reviewing, 1, {"phrase": "scratch"}, csrf=False).status_code == 403
    reviewing.login("view")
    assert ground(reviewing, 1, {"phrase": "scratch"}).status_code == 403


@pytest.mark.parametrize("phrase", ["", "   ", "x" * 65, "scratch<loc_5>", "two\nlines"])
def test_a_bad_phrase_is_refused_naming_the_field(reviewing: Station, phrase: str) -> None:
    reviewing.backend.grounder = lambda frame, p: pytest.fail("a bad phrase must not reach the model")
    reviewing.login("tech")
    response = ground(reviewing, 1, {"phrase": phrase})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "phrase"
    assert phrase.strip() == "" or phrase not in response.text  # the value is never echoed


def test_a_backend_that_cannot_ground_says_so_and_a_missing_entry_is_named(reviewing: Station) -> None:
    def onnx(frame: np.ndarray, phrase: str) -> list[Region]:
        raise TaskUnsupported("backend 'onnx' runs <OD> only")

    reviewing.backend.grounder = onnx
    reviewing.login("tech")
    response = ground(reviewing, 1, {"phrase": "scratch"})
    assert response.status_code == 501 and response.json()["detail"] == "cannot ground here: backend 'onnx' runs " \
                                                                         "<OD> only"
    missing = ground(reviewing, 99, {"phrase": "scratch"})
    assert missing.status_code == 404 and "no queue entry with id 99" in missing.json()["detail"]


def test_one_query_at_a_time_and_the_station_keeps_answering_meanwhile(reviewing: Station) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(frame: np.ndarray, phrase: str) -> list[Region]:
        started.set()
        release.wait(10)
        return []

    reviewing.backend.grounder = slow
    reviewing.login("tech")
    headers = reviewing.csrf()
    first: list[Any] = []
    worker = threading.Thread(target=lambda: first.append(reviewing.client.post(
        "/api/review/entries/1/ground", json={"phrase": "scratch"}, headers=headers)))
    worker.start()
    try:
        assert started.wait(10)
        busy = ground(reviewing, 2, {"phrase": "hole"})
        assert busy.status_code == 429 and "already running (one at a time)" in busy.json()["detail"]
        assert reviewing.client.get("/api/review/entries").status_code == 200  # not blocked by the query
    finally:
        release.set()
        worker.join(10)
    assert first[0].status_code == 200 and first[0].json()["regions"] == []


def test_the_grounding_endpoint_with_the_tiny_model(reviewing: Station, tiny_model_dir: Path) -> None:
    from agent.detector.florence2 import DetectorOptions, Florence2Detector

    detector = Florence2Detector(tiny_model_dir, options=DetectorOptions(device="cpu", max_new_tokens=24))
    reviewing.backend.grounder = lambda frame, phrase: run_task_on(detector, [frame], GROUNDING, phrase)[0]
    reviewing.login("tech")
    response = ground(reviewing, 3, {"phrase": "oil spot"})
    assert response.status_code == 200, response.text
    for region in response.json()["regions"]:
        x1, y1, x2, y2 = region["box"]
        assert region["label"] == "oil spot" and 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240
