"""The command sender: HMAC user properties the daemon verifies, response topic and correlation data, PUBACK."""

from __future__ import annotations

from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest

from agent.control.commands import CommandError, CommandRequest, HmacAuthenticator, request_from_mqtt
from agent.control.sender import CommandNotSent, command_properties, send_command

TOPIC = "edge-inspect/box1/cmd/reload"
KEY = b"sender-key"


def as_request(payload: bytes, props: object) -> CommandRequest:
    """What the daemon makes of the message these properties go out with."""
    return request_from_mqtt("reload", SimpleNamespace(topic=TOPIC, payload=payload, retain=False, properties=props))


def test_a_signed_command_passes_the_daemons_check_once() -> None:
    props, command_id = command_properties(TOPIC, b"{}", KEY, "hmi/replies", b"c1", clock=lambda: 1000.0)
    request = as_request(b"{}", props)
    assert (request.response_topic, request.correlation_data) == ("hmi/replies", b"c1")
    HmacAuthenticator(KEY, max_skew_s=30, clock=lambda: 1001.0).verify(request)
    assert request.user_properties["command_id"] == command_id and request.user_properties["ts"] == "1000.000"
    with pytest.raises(CommandError, match="bad signature"):
        HmacAuthenticator(KEY, 30, clock=lambda: 1001.0).verify(as_request(b'{"scope": "all"}', props))


def test_without_a_key_nothing_is_signed() -> None:
    props, command_id = command_properties(TOPIC, b"{}")
    assert command_id is None and as_request(b"{}", props).user_properties == {}


def test_a_command_the_broker_never_acknowledged_is_an_error() -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="offline", protocol=mqtt.MQTTv5)
    with pytest.raises(CommandNotSent, match=TOPIC):
        send_command(client, TOPIC, b"{}", KEY, timeout_s=0.2)
