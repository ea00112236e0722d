"""Trigger mode end to end, as a PLC drives it: `edge-inspect run` as a subprocess, a real Mosquitto, a burst of
triggers far faster than the camera. Every part must end in exactly one of: one result, or an explicit refusal."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DaemonProcess, command_properties, connect_client, send_command, write_config

pytestmark = pytest.mark.slow

CAMERA_FPS = 4.0
BURST = 100
TRIGGER_INTERVAL_S = 1.0 / (10 * CAMERA_FPS)  # ten times the camera's rate


class Plc:
    """Sends triggers with one correlation id each and keeps every reply by part id."""

    def __init__(self, broker: Broker) -> None:
        self.replies: dict[str, dict[str, Any]] = {}
        self.repeated: list[str] = []  # parts answered twice (a bug: each trigger gets one reply)
        self.client = connect_client(broker, f"plc-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_reply
        self.client.subscribe("plc/replies", qos=1)

    def _on_reply(self, _c: Any, _u: Any, msg: Any) -> None:
        part_id = msg.properties.CorrelationData.decode()
        if part_id in self.replies:
            self.repeated.append(part_id)
        self.replies[part_id] = json.loads(msg.payload)

    def trigger(self, part_id: str) -> None:
        payload = json.dumps({"camera": "gate", "part_id": part_id}).encode()
        self.client.publish(f"{BASE}/cmd/trigger", payload, qos=1,
                            properties=command_properties("plc/replies", part_id.encode()))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_for(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return bool(check())


def answered(events: Subscriber) -> set[str]:
    """The parts whose outcome the line was told: a result is ready, or it failed."""
    return {e["part_id"] for e in events.payloads() if e["event"] in ("result_ready", "trigger_failed")}


def test_a_burst_of_triggers_at_ten_times_the_camera_rate_answers_every_part(tmp_path: Path, tiny_model_dir: Path,
                                                                             mosquitto: Broker) -> None:
    cameras = [{"name": "gate", "source": "synthetic:seed=3,size=128", "fps": CAMERA_FPS, "mode": "trigger"}]
    config = write_config(tmp_path, tiny_model_dir, mosquitto, cameras)
    results = Subscriber(mosquitto, f"{BASE}/cameras/gate/result", client_id="line-results")
    events = Subscriber(mosquitto, f"{BASE}/events", client_id="line-events")
    state = Subscriber(mosquitto, f"{BASE}/cameras/gate/handshake", client_id="line-state")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    plc = Plc(mosquitto)
    try:
        assert wait_for(lambda: any(s["ready"] for s in state.payloads()), 90), daemon.log_tail()
        time.sleep(0.5)  # the command subscription follows the online status on connect
        parts = [f"P-{n:03d}" for n in range(BURST)]
        for part_id in parts:
            plc.trigger(part_id)
            time.sleep(TRIGGER_INTERVAL_S)
        assert wait_for(lambda: len(plc.replies) == BURST, 60), (len(plc.replies), daemon.log_tail())
        accepted = {p for p, r in plc.replies.items() if r["ok"]}
        assert wait_for(lambda: answered(events) >= accepted, 120), (accepted - answered(events), daemon.log_tail())
        final = state.wait_for(lambda p: bool(p) and p[-1]["results_pending"] == 0 and p[-1]["ready"], 30)[-1]
        status = send_command(mosquitto, "status", b"{}")
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        plc.close()
        for sub in (results, events, state):
            sub.close()
        daemon.ensure_dead()

    refused = {p for p, r in plc.replies.items() if not r["ok"]}
    assert plc.repeated == []
    assert all(r["status"] == "accepted" and r["position"] >= 1 for p, r in plc.replies.items() if p in accepted)
    assert all(r["status"] in ("busy", "overflow") and r["error"] for p, r in plc.replies.items() if p in refused)
    assert accepted and refused, "ten times the camera's rate must both accept and refuse parts"
    by_part = Counter(p["part_id"] for p in {r["msg_id"]: r for r in results.payloads()}.values())
    assert set(by_part) == accepted, (sorted(set(by_part) ^ accepted), "a result without acceptance or vice versa")
    assert set(by_part.values()) == {1}, [p for p, n in by_part.items() if n > 1]
    kinds = Counter((e["event"], e["part_id"]) for e in events.payloads() if "part_id" in e)
    assert kinds == Counter(("result_ready", p) for p in accepted), "one result_ready per accepted part, no failure"
    assert final["counters"]["accepted"] == len(accepted) and final["counters"]["results"] == len(accepted)
    assert final["counters"]["busy"] + final["counters"]["overflow"] == len(refused)
    assert status["cameras"]["gate"]["dropped"] == 0, status


def test_a_part_the_line_flags_as_bad_that_does_not_fail_is_queued_for_review_as_a_miss(
        tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker) -> None:
    cameras = [{"name": "gate", "source": "synthetic:seed=3,size=128", "fps": CAMERA_FPS, "mode": "trigger"}]
    config = write_config(tmp_path, tiny_model_dir, mosquitto, cameras, queue={"samplers": ["flagged-miss"]})
    results = Subscriber(mosquitto, f"{BASE}/cameras/gate/result", client_id="line-results")
    state = Subscriber(mosquitto, f"{BASE}/cameras/gate/handshake", client_id="line-state")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        assert wait_for(lambda: any(s["ready"] for s in state.payloads()), 90), daemon.log_tail()
        time.sleep(0.5)  # the command subscription follows the online status on connect
        for part_id, expect in (("F-1", "fail"), ("F-2", None)):
            payload = json.dumps({"camera": "gate", "part_id": part_id, "expect": expect}).encode()
            assert send_command(mosquitto, "trigger", payload)["status"] == "accepted"
            assert wait_for(lambda p=part_id: any(r["part_id"] == p for r in results.payloads()), 60)
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        results.close()
        state.close()
        daemon.ensure_dead()
    verdicts = {r["part_id"]: r["verdict"] for r in results.payloads()}
    assert verdicts["F-1"] != "fail", "precondition: the untrained model finds nothing on the flagged part"
    with sqlite3.connect(tmp_path / "state" / "queue" / "index.sqlite3") as db:
        queued = db.execute("SELECT part_id, reason FROM entries").fetchall()
    assert [part for part, _ in queued] == ["F-1"] and "flagged-miss" in queued[0][1], queued


def test_a_camera_that_is_not_online_is_announced_not_ready_and_refuses_triggers_as_busy(
        tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker) -> None:
    cameras = [{"name": "gate", "source": str(tmp_path / "unplugged"), "fps": CAMERA_FPS, "mode": "trigger"}]
    config = write_config(tmp_path, tiny_model_dir, mosquitto, cameras)
    online = Subscriber(mosquitto, f"{BASE}/status", client_id="line-status")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        assert wait_for(lambda: any(s["state"] == "online" for s in online.payloads()), 90), daemon.log_tail()
        time.sleep(0.5)  # the command subscription follows the online status on connect
        reply = send_command(mosquitto, "trigger", json.dumps({"camera": "gate", "part_id": "P-1"}).encode())
        state = Subscriber(mosquitto, f"{BASE}/cameras/gate/handshake", client_id="line-state")  # a late PLC
        latest = state.wait_for(lambda p: bool(p) and p[-1]["counters"]["busy"] == 1, 10)
        state.close()
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        online.close()
        daemon.ensure_dead()
    assert (reply["ok"], reply["status"], reply["part_id"]) == (False, "busy", "P-1") and "not online" in reply["error"]
    assert latest and not latest[-1]["ready"] and latest[-1]["results_pending"] == 0
