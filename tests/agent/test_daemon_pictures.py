"""Pictures end to end, as an HMI sees them: the real daemon (a scripted detector instead of a model), a real Mosquitto,
the real station over HTTP. A fail result links its annotated JPEG, an uncertain one also carries the below-threshold
boxes that made it uncertain, and every payload validates against the shipped schema."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import jsonschema
import numpy as np
import pytest
import yaml
from structlog.testing import capture_logs

from agent.config import load_settings
from agent.daemon import Daemon
from agent.detections import Detections
from agent.publish.result import result_schema
from agent.station.hmi_tokens import new_token
from tests.agent.station.conftest import PASSWORDS, user_entry
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, assert_gap_free, daemon_config

pytestmark = pytest.mark.slow

CLASSES = ("scratch", "hole", "stain")
GREY = 128  # the camera's only frame: uniform grey, so anything else in a picture was drawn
SIZE = (160, 120)  # width, height
FAIL_BOX = (20.0, 20.0, 70.0, 70.0)  # "hole" 0.9: a confident defect
UNSURE_BOX = (90.0, 30.0, 140.0, 90.0)  # "scratch" 0.45: under its 0.5 threshold, inside the 0.1 band
TOKEN, TOKEN_HASH = new_token()  # an HMI's read-only token


class ScriptedDetector:
    """Answers fail, uncertain, pass, fail, ... in turn, whatever the frame; only pass after `scripted` frames."""

    version = "scripted"

    def __init__(self, scripted: int) -> None:
        self.calls = 0
        self.scripted = scripted

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        return [self._next(image) for image in images]

    def _next(self, image: np.ndarray) -> Detections:
        self.calls += 1
        size = (image.shape[1], image.shape[0])
        script = [(["hole"], [FAIL_BOX], [0.9]), (["scratch"], [UNSURE_BOX], [0.45]), ([], [], [])]
        labels, boxes, scores = script[(self.calls - 1) % 3] if self.calls <= self.scripted else script[2]
        return Detections.from_labels(labels, np.asarray(boxes).reshape(-1, 4), CLASSES, size, score=scores)


@pytest.fixture
def running(request: pytest.FixtureRequest, tmp_path: Path, mosquitto: Broker
            ) -> Iterator[tuple[Daemon, int, Subscriber, list[dict[str, Any]]]]:
    """A daemon on one grey camera with a viewer account, running in a thread until the test ends, and an HMI's
    result subscriber that was subscribed before it started; `(scripted frames, pictures.max_count, pictures folder
    blocked)` come as the fixture's parameter."""
    scripted, max_count, blocked = request.param
    (tmp_path / "model").mkdir()
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((SIZE[1], SIZE[0], 3), GREY, np.uint8))
    config = daemon_config(tmp_path, tmp_path / "model", mosquitto,
                           cameras=[{"name": "cam0", "source": str(tmp_path / "grey.png"), "fps": 6}])
    config["station"]["users"] = [user_entry("view", "viewer")]
    config["station"]["hmi_tokens"] = [{"name": "hmi-1", "token_hash": TOKEN_HASH}]
    config["pictures"] = {"max_count": max_count}
    if blocked:  # a file where the pictures folder goes: every picture write fails, like a full disk
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "pictures").write_text("not a folder")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    sub = subscribed(mosquitto)
    with capture_logs() as logs:  # the daemon's whole life
        daemon = Daemon(load_settings(path), path, detector_factory=lambda _s, _c: ScriptedDetector(scripted))
        thread = threading.Thread(target=daemon.run, name="daemon-under-test")
        thread.start()
        try:
            yield daemon, int(config["station"]["port"]), sub, logs
        finally:
            daemon.stop()
            thread.join(60)
            sub.close()


def subscribed(mosquitto: Broker) -> Subscriber:
    """A result subscriber whose subscription the broker has acknowledged (so it misses no result)."""
    sub = Subscriber(mosquitto, f"{BASE}/cameras/+/result", client_id=f"hmi-{uuid.uuid4().hex[:6]}")
    acked = threading.Event()
    sub.client.on_subscribe = lambda *_args: acked.set()
    deadline = time.monotonic() + 10
    while not sub.connects and time.monotonic() < deadline:
        time.sleep(0.02)
    sub.client.subscribe(sub.topic, qos=1)  # again, now that we listen for its SUBACK
    assert acked.wait(10), "the broker never acknowledged the subscription"
    return sub


def wait_for_results(sub: Subscriber, want: int) -> list[dict[str, Any]]:
    """The first `want` distinct results (delivery is at least once: a repeated msg_id counts once), by seq."""
    def distinct(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted({p["msg_id"]: p for p in payloads}.values(), key=lambda p: p["seq"])

    payloads = distinct(sub.wait_for(lambda p: len(distinct(p)) >= want, timeout_s=90))
    assert len(payloads) >= want, f"only {len(payloads)} results"
    return payloads[:want]


@pytest.mark.parametrize("running", [(10**6, 1000, False)], indirect=True)
def test_fail_and_uncertain_results_link_annotated_pictures_an_hmi_can_fetch(running) -> None:
    _daemon, port, sub, _logs = running
    payloads = wait_for_results(sub, 9)
    for payload in payloads:
        jsonschema.validate(payload, result_schema())
    by_verdict = {v: [p for p in payloads if p["verdict"] == v] for v in ("pass", "fail", "uncertain")}
    assert all(by_verdict.values()), {v: len(p) for v, p in by_verdict.items()}
    assert all("image_url" not in p and "uncertain_boxes" not in p for p in by_verdict["pass"])
    base = f"http://127.0.0.1:{port}/api/pictures/"
    assert all(p["image_url"].startswith(base) for p in by_verdict["fail"] + by_verdict["uncertain"])

    unsure = by_verdict["uncertain"][-1]
    assert unsure["defects"] == []  # below threshold: not a defect...
    assert unsure["uncertain_boxes"] == [{"label": "scratch", "score": 0.45, "box": list(UNSURE_BOX),
                                          "box_norm": [0.5625, 0.25, 0.875, 0.75], "threshold": 0.5,
                                          "below_threshold": True}]  # ...but published as the reason

    fail = by_verdict["fail"][-1]
    with httpx.Client(timeout=10) as hmi:
        assert hmi.get(fail["image_url"]).status_code == 401  # no session, no picture
        login = hmi.post(f"http://127.0.0.1:{port}/api/login", json={"name": "view", "password": PASSWORDS["view"]})
        assert login.status_code == 200
        answer = hmi.get(fail["image_url"])
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
        picture = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (SIZE[1], SIZE[0], 3)
        x1, y1, x2, y2 = (int(v) for v in FAIL_BOX)
        edge = picture[y1 + 10:y2 - 2, x1]  # the box's left side, below its label
        assert np.abs(edge.astype(int) - GREY).max() > 60, "no box drawn where the defect is"
        untouched = picture[100:115, 5:15]  # far from both boxes
        assert np.abs(untouched.astype(int) - GREY).max() < 10
        with httpx.Client(timeout=10) as tokened:  # an HMI without a login, with its token
            by_token = tokened.get(fail["image_url"], headers={"Authorization": f"Bearer {TOKEN}"})
            assert by_token.status_code == 200 and by_token.content == answer.content
        unsure_picture = cv2.imdecode(np.frombuffer(hmi.get(unsure["image_url"]).content, np.uint8), cv2.IMREAD_COLOR)
        x1, y1, x2, y2 = (int(v) for v in UNSURE_BOX)
        assert np.abs(unsure_picture[y1 + 10:y2 - 2, x2].astype(int) - GREY).max() > 60, "below-threshold box not drawn"


@pytest.mark.parametrize("running", [(9, 4, False)], indirect=True)
def test_retention_keeps_the_newest_pictures_and_evicted_ones_answer_404_naming_them(running) -> None:
    daemon, port, sub, _logs = running
    payloads = wait_for_results(sub, 12)  # 9 scripted frames: 6 pictures, then passes only
    urls = [p["image_url"] for p in payloads if "image_url" in p]
    assert len(urls) == 6
    store = daemon.pictures.store
    assert store is not None and len(store) == 4 and store.evicted == 2
    assert sorted(p.name for p in store.directory.iterdir()) == sorted(u.rsplit("/", 1)[1] for u in urls[2:])
    with httpx.Client(timeout=10) as hmi:
        hmi.post(f"http://127.0.0.1:{port}/api/login", json={"name": "view", "password": PASSWORDS["view"]})
        for url in urls[:2]:
            gone = hmi.get(url)
            ident = url.rsplit("/", 1)[1].removesuffix(".jpg")
            assert gone.status_code == 404 and ident in gone.json()["detail"]
        assert all(hmi.get(url).status_code == 200 for url in urls[2:])


@pytest.mark.parametrize("running", [(10**6, 1000, True)], indirect=True)
def test_a_disk_that_refuses_pictures_never_stops_results_which_go_out_without_image_url(running) -> None:
    daemon, _port, sub, logs = running
    payloads = wait_for_results(sub, 9)
    assert_gap_free([p["seq"] for p in payloads], "pictures refused")
    assert {p["verdict"] for p in payloads} == {"pass", "fail", "uncertain"}
    assert not any("image_url" in p for p in payloads)
    assert all(p["uncertain_boxes"] for p in payloads if p["verdict"] == "uncertain")  # the rest is complete
    store = daemon.pictures.store
    assert store is not None and store.failed >= 6
    refusals = [e for e in logs if e["event"].startswith("picture not stored")]
    assert len(refusals) == 1 and refusals[0]["log_level"] == "error"  # once per outage, not once per result
