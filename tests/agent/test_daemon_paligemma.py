"""The daemon serving a PaliGemma 2 model (the paligemma2 family), end to end and unchanged: `edge-inspect run` with
`model.path` = a tiny PaliGemma directory publishes results over MQTT, queues frames for learning, and the station's
review shows a queued frame with the same boxes the line was sent."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import jsonschema
import pytest

from agent.publish.result import result_schema
from agent.station.guards import CSRF_HEADER
from tests.agent.station.conftest import PASSWORDS, user_entry
from tests.agent.test_daemon import wait_until, web_ok, yaml_port
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DaemonProcess, write_config

pytestmark = pytest.mark.slow


def test_a_paligemma_model_is_served_queued_and_reviewed_in_the_station(tmp_path: Path, tiny_paligemma_dir: Path,
                                                                        mosquitto: Broker) -> None:
    # threshold ~0 makes every box a defect, so each result carries all the boxes the model wrote for its frame
    config = write_config(tmp_path, tiny_paligemma_dir, mosquitto,
                          station={"users": [user_entry("tech", "technician")]},
                          model={"default_threshold": 0.0001}, queue={"per_minute": 1000, "random_rate": 1.0})
    results = Subscriber(mosquitto, f"{BASE}/cameras/+/result", client_id=f"plc-{uuid.uuid4().hex[:6]}")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        payloads = results.wait_for(lambda p: len(p) >= 4, timeout_s=120)
        assert len(payloads) >= 4, daemon.log_tail()
        for payload in payloads:
            jsonschema.validate(payload, result_schema())
            assert payload["model"] == "model" and payload["camera"] == "cam0"
        with httpx.Client(base_url=f"http://127.0.0.1:{yaml_port(config)}", timeout=10) as web:
            wait_until(lambda: web_ok(web, "/readyz"), timeout_s=60, what="station /readyz", log=daemon.log_tail)
            assert web.post("/api/login", json={"name": "tech", "password": PASSWORDS["tech"]}).status_code == 200
            wait_until(lambda: web.get("/api/review/entries").json()["total"] > 0, timeout_s=30,
                       what="a queued frame", log=daemon.log_tail)
            listed = web.get("/api/review/entries").json()["entries"]
            by_frame = {p["frame_id"]: p for p in results.payloads()}
            entry = next(e for e in (web.get(f"/api/review/entries/{item['id']}").json() for item in listed)
                         if e["frame_id"] in by_frame and e["suggestions"])
            assert entry["model"] == "model" and entry["class_names"] == ["scratch", "hole", "stain"]
            sent = by_frame[entry["frame_id"]]["defects"]
            shown = entry["suggestions"]
            assert [s["label"] for s in shown] == [d["label"] for d in sent]
            for suggestion, defect in zip(shown, sent):
                assert suggestion["box"] == pytest.approx(defect["box"], abs=0.06)  # 2 vs 1 decimals
                assert suggestion["score"] == defect["score"]
            assert web.get(f"/api/review/entries/{entry['id']}/frame.png").content[:4] == b"\x89PNG"
            csrf = {CSRF_HEADER: web.get("/api/me").json()["csrf_token"]}
            saved = web.post(f"/api/review/entries/{entry['id']}", json={"action": "accept"}, headers=csrf)
            assert saved.status_code == 200, saved.text
            assert saved.json()["status"] == "labelled" and len(saved.json()["labels"]) == len(shown)
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        results.close()
        if daemon.proc.poll() is None:
            daemon.kill()
