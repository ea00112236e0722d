"""The one MQTT client factory: v5, client id, credentials, TLS with client certificates, will, keepalive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from agent.config import MqttConfig, TlsConfig
from agent.ports import free_port
from agent.publish.client import (
    MqttUnavailable,
    Will,
    close_client,
    connect_and_wait,
    create_client,
    negotiated_keepalive,
)
from tests.fixtures.broker import Broker


def test_credentials_will_and_client_id_are_set() -> None:
    cfg = MqttConfig(username="line", password=SecretStr("s3cret"), reconnect_min_s=0.2, reconnect_max_s=7)
    client = create_client(cfg, "box1-tool", Will("p/box1/status", b'{"state": "offline"}'))
    assert (client._client_id, client.username, client.password) == (b"box1-tool", "line", "s3cret")
    assert (client._will_topic, client._will_payload, client._will_qos, client._will_retain) == (
        b"p/box1/status", b'{"state": "offline"}', 1, True)
    assert (client._reconnect_min_delay, client._reconnect_max_delay) == (1, 7)
    assert client._protocol == mqtt.MQTTv5


def test_tls_passes_the_ca_and_the_client_certificate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(mqtt.Client, "tls_set", lambda self, **kw: calls.append(kw))
    monkeypatch.setattr(mqtt.Client, "tls_insecure_set", lambda self, value: calls.append({"insecure": value}))
    tls = TlsConfig(enabled=True, ca_file=tmp_path / "ca.pem", cert_file=tmp_path / "c.pem", key_file=tmp_path / "k")
    create_client(MqttConfig(tls=tls), "box1")
    assert calls[0]["ca_certs"] == str(tmp_path / "ca.pem") and calls[0]["certfile"] == str(tmp_path / "c.pem")
    assert calls[0]["keyfile"] == str(tmp_path / "k") and calls[1] == {"insecure": False}
    calls.clear()
    create_client(MqttConfig(), "box1")
    assert calls == []


def test_keepalive_asked_for_is_half_the_configured_one() -> None:
    assert [negotiated_keepalive(s) for s in (5, 30, 31)] == [3, 15, 16]


def test_connect_and_wait_returns_a_connected_client(mosquitto: Broker) -> None:
    cfg = MqttConfig(port=mosquitto.port, keepalive=5)
    client = connect_and_wait(create_client(cfg, "tool"), cfg)
    try:
        assert client.is_connected()
    finally:
        close_client(client)


def test_an_unreachable_broker_is_named() -> None:
    cfg = MqttConfig(port=free_port())
    with pytest.raises(MqttUnavailable, match=f"cannot reach the MQTT broker 127.0.0.1:{cfg.port}"):
        connect_and_wait(create_client(cfg, "tool"), cfg, timeout_s=1)
