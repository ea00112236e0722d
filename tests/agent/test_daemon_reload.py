"""Hot swap: the running daemon picks up the model store's `current` adapter on `cmd/reload`, keeps its MQTT
session, and refuses a corrupt adapter while the old model keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.store import ModelStore
from tests.agent.test_daemon import BASE, DaemonProcess, send_command, write_config
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.models import make_adapter

pytestmark = pytest.mark.slow


def wait_online(broker: Broker, daemon: DaemonProcess) -> None:
    status = Subscriber(broker, f"{BASE}/status", client_id="hmi-status")
    try:
        states = status.wait_for(lambda p: bool(p) and p[-1]["state"] == "online", timeout_s=90)
        assert states and states[-1]["state"] == "online", daemon.log_tail()
        time.sleep(0.5)
    finally:
        status.close()


def test_reload_swaps_in_the_promoted_adapter_and_refuses_a_corrupt_one(tmp_path: Path, tiny_model_dir: Path,
                                                                       mosquitto: Broker) -> None:
    config = write_config(tmp_path, tiny_model_dir, mosquitto)
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(tiny_model_dir)
    results = Subscriber(mosquitto, f"{BASE}/cameras/+/result", client_id="plc")
    events = Subscriber(mosquitto, f"{BASE}/events", client_id="hmi-events")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_online(mosquitto, daemon)
        assert results.wait_for(lambda p: len(p) >= 2, timeout_s=60), daemon.log_tail()
        assert {p["model"] for p in results.payloads()} == {"model"}

        version = store.add_adapter(make_adapter(tiny_model_dir, tmp_path / "lora"), thresholds={"hole": 0.3})
        store.promote(version)
        reply = send_command(mosquitto, "reload", b"{}", timeout_s=60)
        assert reply["ok"] and reply["model"] == f"model+{version}", reply
        seen = len(results.payloads())
        later = results.wait_for(lambda p: len(p) >= seen + 3, timeout_s=60)[seen:]
        assert later and all(p["model"] == f"model+{version}" for p in later[1:]), [p["model"] for p in later]
        changed = events.wait_for(lambda p: any(e["event"] == "model_changed" for e in p), timeout_s=10)
        assert any(e["event"] == "model_changed" and e["model"] == f"model+{version}" for e in changed)

        bad = store.add_adapter(make_adapter(tiny_model_dir, tmp_path / "lora2", seed=1))
        store.promote(bad)
        weights = store.path(bad) / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-64] + bytes(64))  # bit rot after promotion
        refused = send_command(mosquitto, "reload", b"{}", timeout_s=60)
        assert not refused["ok"] and "corrupt" in refused["error"] and "keeps serving" in refused["error"], refused
        seen = len(results.payloads())
        after = results.wait_for(lambda p: len(p) >= seen + 3, timeout_s=60)[seen:]
        assert after and all(p["model"] == f"model+{version}" for p in after), [p["model"] for p in after]
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        results.close()
        events.close()
        if daemon.proc.poll() is None:
            daemon.kill()
