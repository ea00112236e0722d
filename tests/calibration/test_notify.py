"""A recalibration run's events and its `cmd/reload` go out as the daemon's own would (client, payload, signature)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent.config import CommandsConfig, MqttConfig, Settings
from agent.control.commands import HmacAuthenticator, request_from_mqtt
from agent.ports import free_port
from calibration.notify import Events, reload_daemon
from calibration.report import RunError
from tests.fixtures.broker import Broker, Subscriber

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
KEY = "recalibration-test-key"


def settings(port: int, key: str | None = None) -> Settings:
    return Settings(device_id="line9", mqtt=MqttConfig(port=port, keepalive=5),
                    commands=CommandsConfig(hmac_key=SecretStr(key) if key is not None else None))


def test_progress_events_carry_an_rfc3339_ts_and_the_device(mosquitto: Broker) -> None:
    sub = Subscriber(mosquitto, "edge-inspect/line9/events", client_id="hmi-events")
    sub.wait_for(lambda p: sub.connects > 0, timeout_s=10)  # an event sent before the SUBACK reaches nobody
    events = Events(settings(mosquitto.port), mqtt_enabled=True)
    try:
        events("recalibration_progress", run_id="r1", step="train", report=Path("/tmp/r1/report.json"))
        (event,) = sub.wait_for(lambda p: len(p) >= 1, timeout_s=10)
    finally:
        events.close()
        sub.close()
    assert RFC3339_MS.match(event.pop("ts")), event
    assert event == {"event": "recalibration_progress", "device": "line9", "run_id": "r1", "step": "train",
                     "report": "/tmp/r1/report.json"}


def test_reload_is_a_signed_scope_model_command_the_daemon_accepts(mosquitto: Broker) -> None:
    sub = Subscriber(mosquitto, "edge-inspect/line9/cmd/+", client_id="daemon-stand-in")
    sub.wait_for(lambda p: sub.connects > 0, timeout_s=10)
    sent = reload_daemon(settings(mosquitto.port, KEY))
    sub.wait_for(lambda p: len(p) >= 1, timeout_s=10)
    sub.close()
    assert sent == {"topic": "edge-inspect/line9/cmd/reload", "signed": True}
    request = request_from_mqtt("reload", sub.messages[0])
    HmacAuthenticator(KEY.encode(), max_skew_s=30).verify(request)  # raises if the daemon would refuse it
    assert json.loads(request.payload) == {"scope": "model"} and not request.retained


def test_without_a_broker_events_go_to_the_log_and_reload_fails_naming_it() -> None:
    port = free_port()
    events = Events(settings(port), mqtt_enabled=True)
    assert events.client is None
    events("recalibration_progress", step="snapshot")  # only logged
    with pytest.raises(RunError, match=rf"cannot reach the MQTT broker 127.0.0.1:{port}.*cmd/reload not sent"):
        reload_daemon(settings(port))
