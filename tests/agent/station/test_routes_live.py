"""The live API: cameras, annotated frames, recent fail/uncertain frames, and the server-sent event stream."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from agent.station.backend import CameraInfo
from tests.agent.station.conftest import Station, feed


def test_cameras_lists_the_daemons_cameras_with_their_live_state(station: Station) -> None:
    station.login("view")
    body = station.client.get("/api/cameras").json()
    assert body["model"] == "base+v0003"
    (camera,) = body["cameras"]
    assert (camera["name"], camera["status"], camera["counters"], camera["live"]) == (
        "cam0", "online", {"frames": 5, "dropped": 1}, None)
    feed(station.board, verdict="uncertain", labels=("hole",))
    live = station.client.get("/api/cameras").json()["cameras"][0]["live"]
    assert (live["verdict"], [b["label"] for b in live["boxes"]], live["counts"]["uncertain"]) == (
        "uncertain", ["hole"], 1)


def test_a_camera_only_the_board_knows_is_listed_after_the_configured_ones(station: Station) -> None:
    station.login("view")
    feed(station.board, camera="cam9")
    names = [c["name"] for c in station.client.get("/api/cameras").json()["cameras"]]
    assert names == ["cam0", "cam9"]


def test_frame_jpeg_is_the_latest_annotated_frame(station: Station) -> None:
    station.login("view")
    missing = station.client.get("/api/cameras/cam0/frame.jpg")
    assert missing.status_code == 404 and "no inspected frame yet" in missing.json()["detail"]
    feed(station.board)
    response = station.client.get("/api/cameras/cam0/frame.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (240, 320, 3)
    unknown = station.client.get("/api/cameras/nope/frame.jpg")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "unknown camera 'nope'"


def test_recent_frames_with_their_images(station: Station) -> None:
    station.login("view")
    for i, verdict in enumerate(["fail", "pass", "uncertain"]):
        feed(station.board, verdict=verdict, frame_id=i)
    frames = station.client.get("/api/cameras/cam0/recent").json()["frames"]
    assert [(f["frame_id"], f["verdict"]) for f in frames] == [(2, "uncertain"), (0, "fail")]
    assert all(f["thumbnail"].startswith("data:image/jpeg;base64,") for f in frames)  # the strip in one request
    image = station.client.get(frames[0]["image"])
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    assert station.client.get("/api/cameras/cam0/recent/999.jpg").status_code == 404
    bad = station.client.get("/api/cameras/cam0/recent/abc.jpg")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "ident"


def next_event(lines: Iterator[str]) -> tuple[str, dict[str, Any]]:
    """The next server-sent event (name, data) from the stream's lines."""
    name = "message"
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            return name, json.loads(line.removeprefix("data: "))
    raise AssertionError("the stream ended")


def test_live_stream_pushes_at_least_two_updates_a_second_per_camera(station: Station) -> None:
    station.login("view")
    stop = threading.Event()

    def camera() -> None:  # a 10 fps camera
        frame_id = 0
        while not stop.is_set():
            frame_id += 1
            feed(station.board, verdict="pass", frame_id=frame_id, labels=())
            time.sleep(0.1)

    feeder = threading.Thread(target=camera)
    feeder.start()
    try:
        with station.client.stream("GET", "/api/live") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines, deadline = response.iter_lines(), time.monotonic() + 2.0
            events = []
            while time.monotonic() < deadline:
                events.append(next_event(lines))
            station.app.state.station.stopping.set()
    finally:
        stop.set()
        feeder.join()
    seqs = [c["live"]["seq"] for name, e in events if name == "live" for c in e["cameras"] if c["live"]]
    assert len(seqs) >= 4 and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(e["model"] == "base+v0003" for name, e in events if name == "live")


def test_a_live_event_carries_its_frame_as_the_jpeg_frame_jpg_serves(station: Station) -> None:
    station.login("view")
    feed(station.board, verdict="fail", labels=("scratch",))
    with station.client.stream("GET", "/api/live") as response:
        (camera,) = next_event(response.iter_lines())[1]["cameras"]
        station.app.state.station.stopping.set()
    head, _, data = camera["live"]["jpeg"].partition(",")
    served = station.client.get(f"/api/cameras/cam0/frame.jpg?seq={camera['live']['seq']}").content
    assert head == "data:image/jpeg;base64" and base64.b64decode(data) == served  # one picture, no request for it
    assert "jpeg" not in station.client.get("/api/cameras").json()["cameras"][0]["live"]  # the list stays small


def test_live_stream_reports_status_changes_and_logout(station: Station) -> None:
    station.login("tech")
    with station.client.stream("GET", "/api/live") as response:
        lines = response.iter_lines()
        assert next_event(lines)[1]["cameras"][0]["status"] == "online"
        station.backend.camera_infos["cam0"] = CameraInfo("offline", "no frame for 5 s")
        name, update = next_event(lines)
        assert (name, update["cameras"][0]["status"], update["cameras"][0]["reason"]) == (
            "live", "offline", "no frame for 5 s")
        station.app.state.station.sessions._sessions.clear()  # the session ends (expiry, logout elsewhere)
        assert next_event(lines)[0] == "logout"
