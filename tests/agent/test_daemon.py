"""The daemon end to end: `edge-inspect run` as a subprocess, a synthetic camera, a real Mosquitto.

A persistent subscriber (clean_start False, QoS 1) is what a PLC gateway would run; it deduplicates on `msg_id`
because delivery is at least once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from agent.publish.result import result_schema
from tests.agent.station.conftest import PASSWORDS, user_entry
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DEVICE, DaemonProcess, assert_gap_free, send_command, unique_seqs, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def daemon_env(tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker) -> Iterator[tuple[Path, Broker]]:
    yield write_config(tmp_path, tiny_model_dir, mosquitto), mosquitto


@pytest.fixture
def results(mosquitto: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto, f"{BASE}/cameras/+/result", client_id=f"plc-{uuid.uuid4().hex[:6]}")
    yield sub
    sub.close()


def test_results_are_schema_valid_and_status_goes_online_then_offline(daemon_env, results, tmp_path) -> None:
    config, broker = daemon_env
    status = Subscriber(broker, f"{BASE}/status", client_id="hmi-status")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        payloads = results.wait_for(lambda p: len(p) >= 8, timeout_s=90)
        assert len(payloads) >= 8, daemon.log_tail()
        for payload in payloads:
            jsonschema.validate(payload, result_schema())
            assert payload["device"] == DEVICE and payload["camera"] == "cam0" and payload["model"] == "model"
        assert_gap_free(unique_seqs(payloads), "steady stream")
        assert daemon.terminate() == 0, daemon.log_tail()
        states = status.wait_for(lambda p: bool(p) and p[-1]["state"] == "offline", timeout_s=10)
        assert [s["state"] for s in states][:1] == ["online"] and states[-1]["state"] == "offline"
    finally:
        status.close()
        if daemon.proc.poll() is None:
            daemon.kill()


def test_broker_killed_and_restarted_mid_stream_loses_no_result(daemon_env, results, tmp_path) -> None:
    config, broker = daemon_env
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        assert len(results.wait_for(lambda p: len(p) >= 4, timeout_s=90)) >= 4, daemon.log_tail()
        broker.kill()
        time.sleep(3)  # the daemon keeps inspecting into its outbox meanwhile
        broker.start()
        before = max(p["seq"] for p in results.payloads())
        payloads = results.wait_for(lambda p: max(x["seq"] for x in p) >= before + 20, timeout_s=90)
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    assert_gap_free(unique_seqs(payloads), f"broker restart; daemon log:\n{daemon.log_tail()}")


def test_sigkilled_daemon_leaves_offline_will_and_resumes_without_gaps(daemon_env, results, tmp_path) -> None:
    config, broker = daemon_env
    status = Subscriber(broker, f"{BASE}/status", client_id="hmi-status")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        assert len(results.wait_for(lambda p: len(p) >= 5, timeout_s=90)) >= 5, daemon.log_tail()
        daemon.kill()  # no clean disconnect: the broker publishes the will after ~1.5 x keepalive
        states = status.wait_for(lambda p: bool(p) and p[-1]["state"] == "offline", timeout_s=20)
        assert states[-1]["state"] == "offline"
        last = max(p["seq"] for p in results.payloads())
        daemon = DaemonProcess(config, tmp_path / "daemon.log")
        payloads = results.wait_for(lambda p: max(x["seq"] for x in p) >= last + 5, timeout_s=90)
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        status.close()
        if daemon.proc.poll() is None:
            daemon.kill()
    assert_gap_free(unique_seqs(payloads), f"daemon SIGKILL; log:\n{daemon.log_tail()}")


def test_trigger_round_trips_part_id_and_malformed_commands_get_errors(tmp_path, tiny_model_dir, mosquitto,
                                                                       results) -> None:
    cameras = [{"name": "gate", "source": "synthetic:seed=3,size=128", "fps": 5, "mode": "trigger"}]
    config = write_config(tmp_path, tiny_model_dir, mosquitto, cameras)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    online = Subscriber(mosquitto, f"{BASE}/status", client_id="hmi-status")
    try:
        states = online.wait_for(lambda p: bool(p) and p[-1]["state"] == "online", timeout_s=90)
        assert states and states[-1]["state"] == "online", daemon.log_tail()
        time.sleep(0.5)  # the command subscription follows the online status on connect
        status = send_command(mosquitto, "status", b"{}")
        assert status["ok"] and status["model"] == "model", daemon.log_tail()
        reply = send_command(mosquitto, "trigger", json.dumps({"camera": "gate", "part_id": "P-0042"}).encode())
        assert reply["ok"] and reply["part_id"] == "P-0042", reply
        payloads = results.wait_for(lambda p: any(x["part_id"] == "P-0042" for x in p), timeout_s=30)
        assert [p["part_id"] for p in payloads] == ["P-0042"], "free-running frames must not be published"
        bad_json = send_command(mosquitto, "trigger", b"{not json")
        assert not bad_json["ok"] and "JSON" in bad_json["error"]
        unknown = send_command(mosquitto, "trigger", json.dumps({"camera": "nope"}).encode())
        assert not unknown["ok"] and "'nope'" in unknown["error"]
        extra = send_command(mosquitto, "trigger", json.dumps({"camera": "gate", "colour": "red"}).encode())
        assert not extra["ok"] and "colour" in extra["error"]
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        online.close()
        if daemon.proc.poll() is None:
            daemon.kill()


def test_the_daemon_serves_its_station_with_live_frames_to_a_logged_in_technician(tmp_path, tiny_model_dir,
                                                                                     mosquitto) -> None:
    """... and grounds a phrase on a queued frame with the model it serves (the review page's "find the ...")."""
    config = write_config(tmp_path, tiny_model_dir, mosquitto, station={"users": [user_entry("tech", "technician")]},
                          queue={"per_minute": 1000, "random_rate": 1.0})
    port = yaml_port(config)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as web:
            wait_until(lambda: web_ok(web, "/readyz"), timeout_s=90, what="station /readyz", log=daemon.log_tail)
            assert web.get("/api/cameras").status_code == 401  # nothing but health without a login
            assert web.post("/api/login", json={"name": "tech", "password": PASSWORDS["tech"]}).status_code == 200
            wait_until(lambda: web.get("/api/cameras/cam0/frame.jpg").status_code == 200, timeout_s=30,
                       what="a live frame", log=daemon.log_tail)
            assert web.get("/api/cameras/cam0/frame.jpg").content[:2] == b"\xff\xd8"  # a JPEG
            assert_grounds_a_queued_frame(web, daemon)
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()


def assert_grounds_a_queued_frame(web: httpx.Client, daemon: DaemonProcess) -> None:
    wait_until(lambda: web.get("/api/review/entries?status=all").json()["total"] > 0, timeout_s=30,
               what="a queued frame", log=daemon.log_tail)
    entry = web.get("/api/review/entries?status=all").json()["entries"][0]
    csrf = {"X-CSRF-Token": web.get("/api/me").json()["csrf_token"]}
    answer = web.post(f"/api/review/entries/{entry['id']}/ground", json={"phrase": "hole"}, headers=csrf, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "model" and all(region["label"] == "hole" for region in body["regions"])


def yaml_port(config: Path) -> int:
    return int(yaml.safe_load(config.read_text())["station"]["port"])


def web_ok(web: httpx.Client, path: str) -> bool:
    try:
        return web.get(path).status_code == 200
    except httpx.TransportError:
        return False


def wait_until(check, timeout_s: float, what: str, log) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {timeout_s} s\n{log()}")


def test_a_daemon_with_the_station_disabled_never_imports_the_web_server_stack() -> None:
    # ~10 MB of FastAPI/uvicorn the line would pay for nothing (docs/performance.md, "Station on vs off")
    code = "import sys, agent.daemon; print(sorted({'fastapi', 'uvicorn', 'starlette'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_daemon_replays_delivered_results_on_request(daemon_env, results) -> None:
    """`cmd/replay` end to end: delivered results come again on their topic, flagged, with their msg_id and seq."""
    config, mosquitto = daemon_env
    daemon = DaemonProcess(config, config.parent / "daemon.log")
    try:
        first = results.wait_for(lambda p: len(unique_seqs(p)) >= 6, timeout_s=90)
        assert len(unique_seqs(first)) >= 6, daemon.log_tail()
        originals = {p["seq"]: p for p in first if not p.get("replay")}
        reply = send_command(mosquitto, "replay", json.dumps({"from_seq": 2, "to_seq": 4}).encode())
        assert reply["ok"] and reply["pruned"] == [], reply
        pending = {seq for a, b in reply["pending"] for seq in range(a, b + 1)}  # not yet acknowledged: not replayed
        expected = [seq for seq in (2, 3, 4) if seq not in pending]
        assert reply["replayed"] == len(expected), reply
        replayed = results.wait_for(lambda p: len([x for x in p if x.get("replay")]) >= len(expected), 30)
        flagged = [p for p in replayed if p.get("replay")]
        assert [p["seq"] for p in flagged] == expected
        for payload in flagged:
            jsonschema.validate(payload, result_schema())
            assert {**payload, "replay": None} == {**originals[payload["seq"]], "replay": None}
        bad = send_command(mosquitto, "replay", json.dumps({"from_seq": 4, "to_seq": 2}).encode())
        assert not bad["ok"] and "to_seq" in bad["error"], bad
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
