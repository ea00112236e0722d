"""A reload applied live, as the controls engineer sees it: the real daemon on its threads (a dialled detector instead
of a model), a real Mosquitto, signed `cmd/reload` (and SIGHUP's path). Cameras are added, restarted with a new fps
and retired while an untouched camera loses no frame; thresholds and queue settings change; a broken config is
refused whole; the station moves to a new port; and through all of it the MQTT session is the one it started with."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.daemon import Daemon
from tests.agent.station.conftest import PASSWORDS, user_entry
from tests.agent.test_daemon_pictures import subscribed
from tests.fixtures.broker import Broker, Subscriber, free_port
from tests.fixtures.daemon import BASE
from tests.fixtures.inprocess import DialDetector, SignedHmi, daemon_running, signed_config, write_yaml

KEEP = {"name": "keep", "source": "synthetic:seed=1,size=64", "fps": 5, "queue_size": 200}  # never touched
MOVED = {"name": "moved", "source": "synthetic:seed=2,size=64", "fps": 2}
ADDED = {"name": "added", "source": "synthetic:seed=3,size=64", "fps": 4}


@pytest.fixture
def hmi(mosquitto: Broker) -> Iterator[SignedHmi]:
    client = SignedHmi(mosquitto)
    yield client
    client.close()


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def distinct(sub: Subscriber) -> list[dict[str, Any]]:
    """Results once each (delivery is at least once), by seq."""
    return sorted({p["msg_id"]: p for p in sub.payloads()}.values(), key=lambda p: p["seq"])


def captured_since(sub: Subscriber, since: float) -> list[dict[str, Any]]:
    """Results of frames captured after `since` (Unix time): inspected after anything that happened before it."""
    def captured(payload: dict[str, Any]) -> float:
        return datetime.fromisoformat(payload["captured_at"].replace("Z", "+00:00")).timestamp()

    return [p for p in distinct(sub) if captured(p) > since]


def frame_ids(sub: Subscriber, camera: str) -> list[int]:
    return [p["frame_id"] for p in distinct(sub) if p["camera"] == camera]


def camera_states(sub: Subscriber, camera: str) -> list[str]:
    with sub._lock:
        messages = list(sub.messages)
    return [json.loads(m.payload)["state"] for m in messages if m.topic == f"{BASE}/cameras/{camera}/status"]


def reload_events(sub: Subscriber) -> list[dict[str, Any]]:
    return [e for e in sub.payloads() if e["event"] == "model_changed"]


def session_untouched(daemon: Daemon, client: Any) -> bool:
    """Same paho client, one connect, no disconnect: the broker kept serving the session the daemon started with."""
    stats = daemon.publisher.stats
    return daemon.publisher.client is client and stats.connects == 1 and stats.disconnects == 0


def test_cameras_are_added_restarted_and_retired_live_while_the_others_lose_no_frame(
        tmp_path: Path, mosquitto: Broker, hmi: SignedHmi) -> None:
    config = signed_config(tmp_path, mosquitto, [KEEP, MOVED], station={"enabled": False})
    path = write_yaml(tmp_path / "config.yaml", config)
    results = subscribed(mosquitto)
    statuses = Subscriber(mosquitto, f"{BASE}/cameras/+/status", client_id=f"hmi-{uuid.uuid4().hex[:6]}")
    events = Subscriber(mosquitto, f"{BASE}/events", client_id=f"hmi-{uuid.uuid4().hex[:6]}")
    try:
        with daemon_running(path, DialDetector()) as daemon:
            hmi.wait_answering()
            client, keep = daemon.publisher.client, daemon.workers["keep"]
            wait_until(lambda: len(frame_ids(results, "moved")) >= 2, 30, "results from 'moved'")
            before = frame_ids(results, "moved")[-1]

            unchanged = hmi.ask("reload", {"scope": "config"}, timeout_s=60)
            assert unchanged["ok"] and unchanged["cameras"] == {"added": [], "removed": [], "restarted": []}
            config["cameras"] = [KEEP, {**MOVED, "fps": 8}, ADDED]  # moved: new fps; added: new
            write_yaml(path, config)
            reply = hmi.ask("reload", {"scope": "config"}, timeout_s=60)
            assert reply["ok"], reply
            assert reply["cameras"] == {"added": ["added"], "removed": [], "restarted": ["moved"]}, reply
            assert reply["applied"] == ["cameras"] and reply["restart_required"] == []
            wait_until(lambda: frame_ids(results, "added"), 30, "results from the added camera")
            assert daemon.workers["moved"].cfg.fps == 8
            wait_until(lambda: [f for f in frame_ids(results, "moved") if f > before], 30, "'moved' after restart")
            moved_ids = frame_ids(results, "moved")
            assert moved_ids == sorted(set(moved_ids)), "the restarted camera's frame ids go on, never again from 0"
            assert "offline" in camera_states(statuses, "moved")  # it was restarted: offline, then online again

            config["cameras"] = [KEEP, ADDED]
            write_yaml(path, config)
            reloads = len(reload_events(events))  # one per reload so far
            daemon.reload_event.set()  # what SIGHUP does: the reload runs on its own thread
            retired = wait_until(lambda: reload_events(events)[reloads:], 30, "the reload event")[0]
            assert retired["cameras"] == {"added": [], "removed": ["moved"], "restarted": []}, retired
            wait_until(lambda: camera_states(statuses, "moved")[-1:] == ["retired"], 30, "'moved' retired")
            status = hmi.ask("status")
            assert sorted(status["cameras"]) == ["added", "keep"], status
            trigger = hmi.ask("trigger", {"camera": "moved", "part_id": "P-1"})
            assert not trigger["ok"] and "unknown camera 'moved'" in trigger["error"]

            count = len(frame_ids(results, "keep"))
            wait_until(lambda: len(frame_ids(results, "keep")) >= count + 3, 30, "'keep' going on")
            assert daemon.workers["keep"] is keep and keep.counters.dropped == 0
            assert session_untouched(daemon, client), daemon.publisher.stats
        ids = frame_ids(results, "keep")
        assert ids == list(range(ids[0], ids[-1] + 1)), "the untouched camera lost frames"
        assert "offline" not in camera_states(statuses, "keep")[:-1]  # offline only when the daemon stopped
    finally:
        for sub in (results, statuses, events):
            sub.close()


def test_thresholds_and_queue_change_live_a_broken_config_is_refused_whole_and_restart_keys_are_named(
        tmp_path: Path, mosquitto: Broker, hmi: SignedHmi) -> None:
    config = signed_config(tmp_path, mosquitto, [{**KEEP, "fps": 4}], station={"enabled": False},
                           model={"thresholds": {"hole": 0.5}, "uncertain_band": 0.05})
    path = write_yaml(tmp_path / "config.yaml", config)
    results = subscribed(mosquitto)
    try:
        with daemon_running(path, DialDetector(score=0.6)) as daemon:
            hmi.wait_answering()
            client = daemon.publisher.client
            wait_until(lambda: any(p["verdict"] == "fail" for p in distinct(results)), 30, "a fail at 0.5")

            config["model"]["thresholds"] = {"hole": 0.7}
            config["queue"] = {**config["queue"], "per_minute": 7, "samplers": ["flagged-miss"]}
            write_yaml(path, config)
            reply = hmi.ask("reload", {"scope": "config"}, timeout_s=60)
            assert reply["ok"] and reply["applied"] == ["model.thresholds", "queue.per_minute", "queue.samplers"]
            assert reply["restart_required"] == [] and reply["model"] == "dial"
            since = time.time() + 0.01  # past the swap by more than captured_at's millisecond rounding
            later = wait_until(lambda: captured_since(results, since), 30, "results after the reload")
            assert {p["verdict"] for p in later} == {"pass"}, "0.6 is no defect at 0.7 (and outside the 0.05 band)"
            assert [s.name for s in daemon.queue.samplers] == ["flagged-miss"]
            assert daemon.queue.quota.limits["minute"] == 7

            broken = {**config, "cameras": [KEEP, KEEP], "model": {**config["model"], "thresholds": {"hole": 0.1}}}
            write_yaml(path, broken)
            refused = hmi.ask("reload", {"scope": "config"}, timeout_s=60)
            assert not refused["ok"] and "duplicate camera names ['keep']" in refused["error"], refused
            assert "running config stays" in refused["error"]
            since = time.time() + 0.01  # past the swap by more than captured_at's millisecond rounding
            later = wait_until(lambda: captured_since(results, since), 30, "results after the refusal")
            assert {p["verdict"] for p in later} == {"pass"}
            assert daemon.thresholds.for_classes(["hole"]) == {"hole": 0.7}

            wanting = {**config, "state_dir": str(tmp_path / "elsewhere"), "mqtt": {**config["mqtt"], "keepalive": 9}}
            write_yaml(path, wanting)
            reply = hmi.ask("reload", {"scope": "config"}, timeout_s=60)
            assert reply["ok"] and reply["applied"] == [], reply
            assert reply["restart_required"] == ["state_dir", "mqtt.keepalive"], reply
            assert daemon.settings.mqtt.keepalive == 5 and daemon.settings.state_dir == tmp_path / "state"
            assert session_untouched(daemon, client), daemon.publisher.stats
    finally:
        results.close()


def test_the_station_restarts_on_its_new_port_and_users_and_a_port_it_cannot_take_is_refused(
        tmp_path: Path, mosquitto: Broker, hmi: SignedHmi) -> None:
    first, second = free_port(), free_port()
    config = signed_config(tmp_path, mosquitto, [{**KEEP, "fps": 2}],
                           station={"port": first, "users": [user_entry("tech", "technician")]})
    path = write_yaml(tmp_path / "config.yaml", config)
    with daemon_running(path, DialDetector()) as daemon:
        hmi.wait_answering()
        client = daemon.publisher.client
        assert login(first, "tech") == 200

        config["station"] = {"port": second, "users": [user_entry("tech", "technician"), user_entry("view", "viewer")]}
        write_yaml(path, config)
        reply = hmi.ask("reload", {"scope": "config"}, timeout_s=60)
        assert reply["ok"] and reply["applied"] == ["station.port", "station.users"], reply
        assert login(second, "view") == 200
        with pytest.raises(httpx.ConnectError):
            login(first, "tech")

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            write_yaml(path, {**config, "station": {**config["station"], "port": port}})
            refused = hmi.ask("reload", {"scope": "config"}, timeout_s=60)
        assert not refused["ok"] and f"station: cannot serve on 127.0.0.1:{port}" in refused["error"], refused
        assert login(second, "view") == 200 and daemon.settings.station.port == second  # the old settings serve
        assert session_untouched(daemon, client), daemon.publisher.stats


def login(port: int, user: str) -> int:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
        return web.post("/api/login", json={"name": user, "password": PASSWORDS[user]}).status_code
