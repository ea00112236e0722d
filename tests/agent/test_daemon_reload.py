"""Reload: the `model` section and the model store's `current` adapter change live (the other live sections:
tests/agent/test_daemon_live_reload.py), the reply names the keys that wait for a restart, a config that does not
validate is refused whole; end to end, the running daemon hot-swaps a promoted adapter, keeps its MQTT session, and
refuses a corrupt adapter while the old model keeps serving."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import yaml

from agent.config import load_settings
from agent.control.commands import CommandError, ReloadCommand
from agent.daemon import Daemon
from agent.detections import Detections
from agent.model_choice import ModelChoice
from agent.store.model_store import ModelStore
from tests.agent.test_daemon import BASE, DaemonProcess, send_command, write_config
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.models import make_adapter


# ----- what a reload applies (no model, no broker: a stand-in detector and publisher) -------------------------------
class StandInDetector:
    def __init__(self, version: str) -> None:
        self.version = version

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        return []


class EventRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish_event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))


def write_yaml(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def idle(tmp_path: Path) -> tuple[Daemon, dict[str, Any], EventRecorder, list[ModelChoice]]:
    """A daemon that loaded its (stand-in) model from a config file but started nothing else."""
    (tmp_path / "model").mkdir()  # a local model path must exist; the stand-in detector never reads it
    config = {"device_id": "box1", "state_dir": str(tmp_path / "state"), "mqtt": {"port": 1883},
              "model": {"path": str(tmp_path / "model"), "thresholds": {"hole": 0.5}},
              "cameras": [{"name": "cam0", "source": "synthetic:seed=1"}]}
    loads: list[ModelChoice] = []

    def factory(_settings: Any, choice: ModelChoice) -> Any:
        loads.append(choice)
        return StandInDetector(f"model#{len(loads)}")

    path = write_yaml(tmp_path / "config.yaml", config)
    daemon = Daemon(load_settings(path), path, detector_factory=factory)
    daemon.choice = ModelChoice(None, {}, "base")
    daemon.detector = factory(daemon.settings, daemon.choice)
    events = EventRecorder()
    daemon.publisher = cast(Any, events)
    return daemon, config, events, loads


def test_reload_applies_the_model_section_and_names_what_needs_a_restart(idle: Any) -> None:
    daemon, config, events, loads = idle
    config["model"]["thresholds"] = {"hole": 0.2}
    config["mqtt"]["port"] = 1884
    config["metrics"] = {"port": 9999}
    write_yaml(daemon.config_path, config)

    reply = daemon.cmd_reload(ReloadCommand())

    assert reply == {"model": "model#2", "scope": "all", "applied": ["model.thresholds"],
                     "restart_required": ["mqtt.port", "metrics.port"],
                     "cameras": {"added": [], "removed": [], "restarted": []}}
    assert daemon.thresholds.for_classes(["hole"]) == {"hole": 0.2} and len(loads) == 2
    assert daemon.settings.mqtt.port == 1883 and daemon.settings.metrics.port == 9108
    assert events.events == [("model_changed", {"previous": "model#1", **reply})]


def test_a_config_that_does_not_validate_is_refused_whole_and_nothing_changes(idle: Any) -> None:
    daemon, config, events, loads = idle
    config["model"]["thresholds"] = {"hole": 0.2}
    config["cameras"].append({"name": "cam0", "source": "synthetic:seed=2"})
    write_yaml(daemon.config_path, config)
    running = daemon.settings
    with pytest.raises(CommandError, match=r"duplicate camera names \['cam0'\]") as refused:
        daemon.cmd_reload(ReloadCommand())
    assert "the running config stays" in str(refused.value)
    assert daemon.settings is running and daemon.settings.model.thresholds == {"hole": 0.5} and len(loads) == 1
    assert [kind for kind, _ in events.events] == ["reload_failed"]


def test_scope_config_changes_thresholds_without_loading_the_model(idle: Any) -> None:
    daemon, config, _events, loads = idle
    config["model"]["default_threshold"] = 0.8
    write_yaml(daemon.config_path, config)
    reply = daemon.cmd_reload(ReloadCommand(scope="config"))
    assert reply["applied"] == ["model.default_threshold"] and reply["model"] == "model#1" and len(loads) == 1
    assert daemon.thresholds.default == 0.8


def test_scope_model_reads_the_store_but_not_the_config_file(idle: Any) -> None:
    daemon, config, _events, loads = idle
    config["model"]["thresholds"] = {"hole": 0.9}
    config["mqtt"]["port"] = 1999
    write_yaml(daemon.config_path, config)
    reply = daemon.cmd_reload(ReloadCommand(scope="model"))
    assert reply == {"model": "model#2", "scope": "model", "applied": [], "restart_required": [],
                     "cameras": {"added": [], "removed": [], "restarted": []}}
    assert daemon.settings.model.thresholds == {"hole": 0.5} and len(loads) == 2


# ----- end to end -----------------------------------------------------------------------------------------------------


def wait_online(broker: Broker, daemon: DaemonProcess) -> None:
    status = Subscriber(broker, f"{BASE}/status", client_id="hmi-status")
    try:
        states = status.wait_for(lambda p: bool(p) and p[-1]["state"] == "online", timeout_s=90)
        assert states and states[-1]["state"] == "online", daemon.log_tail()
        time.sleep(0.5)
    finally:
        status.close()


@pytest.mark.slow
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
