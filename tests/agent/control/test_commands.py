"""Commands: validated per verb, refused with a reason naming the bad field, retained ones never executed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import MqttConfig, Settings
from agent.control.commands import (
    CommandError,
    CommandRequest,
    CommandRouter,
    FlagCommand,
    HmacAuthenticator,
    TriggerCommand,
    command_signature,
)
from agent.control.sender import send_command
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox
from agent.statedir import StateDir
from tests.fixtures.broker import Broker

BASE = "edge-inspect/box1"


class Recorder:
    """A handler that records what it was called with."""

    def __init__(self, reply: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.calls: list[Any] = []
        self.reply = reply
        self.error = error

    def __call__(self, command: Any) -> dict[str, Any] | None:
        self.calls.append(command)
        if self.error is not None:
            raise self.error
        return self.reply


def request(verb: str, payload: bytes | str, **kw: Any) -> CommandRequest:
    raw = payload.encode() if isinstance(payload, str) else payload
    return CommandRequest(verb=verb, topic=f"{BASE}/cmd/{verb}", payload=raw, **kw)


@pytest.fixture
def router() -> CommandRouter:
    return CommandRouter(reply=lambda *a: None, default_reply_topic=f"{BASE}/replies")


def test_valid_trigger_reaches_its_handler_and_reply_carries_its_fields(router: CommandRouter) -> None:
    handler = Recorder(reply={"queued": True})
    router.register("trigger", handler)
    reply = router.handle(request("trigger", '{"camera": "cam0", "part_id": "P-17"}'))
    assert handler.calls == [TriggerCommand(camera="cam0", part_id="P-17")]
    assert reply == {"ok": True, "verb": "trigger", "queued": True}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"part_id": "P1"}', "camera: Field required"),
        ('{"camera": "cam0", "speed": 3}', "speed: Extra inputs are not permitted"),
        ('{"camera": 5}', "camera: Input should be a valid string"),
        ('{"camera": "cam0", "part_id": "' + "x" * 200 + '"}', "part_id: String should have at most 128"),
        ('{"camera": ', "payload is not JSON"),
        ('["cam0"]', "payload must be a JSON object, got list"),
        (b"\xff\xfe", "payload is not UTF-8"),
    ],
)
def test_malformed_trigger_is_refused_naming_the_problem_and_runs_nothing(
    router: CommandRouter, payload: str | bytes, reason: str
) -> None:
    handler = Recorder()
    router.register("trigger", handler)
    reply = router.handle(request("trigger", payload))
    assert reply is not None and reply["ok"] is False
    assert reason in reply["error"]
    assert handler.calls == []


def test_expect_defect_is_the_documented_synonym_of_fail_and_anything_else_is_refused(router: CommandRouter) -> None:
    handler = Recorder()
    router.register("trigger", handler)
    router.handle(request("trigger", '{"camera": "cam0", "part_id": "P-1", "expect": "defect"}'))
    assert handler.calls == [TriggerCommand(camera="cam0", part_id="P-1", expect="fail")]
    refused = router.handle(request("trigger", '{"camera": "cam0", "expect": "bad"}'))
    assert refused is not None and "expect: Input should be 'pass' or 'fail'" in refused["error"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"camera": "cam0"}', "part_id: Field required"),
        ('{"camera": "cam0", "part_id": ""}', "part_id: String should have at least 1 character"),
        ('{"camera": "cam0", "part_id": "P-1", "why": "x"}', "why: Extra inputs are not permitted"),
        ('{"camera": "cam0", "part_id": "P-1", "reason": "' + "x" * 501 + '"}', "reason: String should have at most"),
    ],
)
def test_a_flag_names_its_camera_and_part_and_a_malformed_one_is_refused(
    router: CommandRouter, payload: str, reason: str
) -> None:
    handler = Recorder(reply={"queued": True})
    router.register("flag", handler)
    good = router.handle(request("flag", '{"camera": "cam0", "part_id": "P-1", "reason": "leak test failed"}'))
    assert good == {"ok": True, "verb": "flag", "queued": True}
    assert handler.calls == [FlagCommand(camera="cam0", part_id="P-1", reason="leak test failed")]
    bad = router.handle(request("flag", payload))
    assert bad is not None and not bad["ok"] and reason in bad["error"] and len(handler.calls) == 1


def test_empty_payload_means_defaults(router: CommandRouter) -> None:
    handler = Recorder()
    router.register("reload", handler)
    assert router.handle(request("reload", b""))["ok"] is True  # type: ignore[index]
    assert handler.calls[0].scope == "all"


def test_unknown_verb_and_missing_handler_are_refused(router: CommandRouter) -> None:
    unknown = router.handle(request("selfdestruct", "{}"))
    unhandled = router.handle(request("recalibrate", "{}"))
    assert unknown is not None and "unknown verb 'selfdestruct'" in unknown["error"] and "trigger" in unknown["error"]
    assert unhandled is not None and "'recalibrate' is not available" in unhandled["error"]


def test_retained_command_is_ignored_without_reply(router: CommandRouter) -> None:
    handler = Recorder()
    router.register("trigger", handler)
    assert router.handle(request("trigger", '{"camera": "cam0"}', retained=True)) is None
    assert handler.calls == [] and router.ignored_retained == 1


def test_handler_failures_become_error_replies(router: CommandRouter) -> None:
    router.register("trigger", Recorder(error=CommandError("camera 'cam9' unknown; cameras: ['cam0']")))
    router.register("reload", Recorder(error=RuntimeError("adapter file truncated")))
    refused = router.handle(request("trigger", '{"camera": "cam9"}'))
    crashed = router.handle(request("reload", "{}"))
    assert refused == {"ok": False, "verb": "trigger", "error": "camera 'cam9' unknown; cameras: ['cam0']"}
    assert crashed is not None and crashed["error"] == "reload failed: RuntimeError: adapter file truncated"


def test_registering_a_new_verb_requires_its_model(router: CommandRouter) -> None:
    with pytest.raises(ValueError, match="verb 'flush' has no payload model"):
        router.register("flush", Recorder())


# ----- HMAC ---------------------------------------------------------------------------------------------------------
KEY = b"test-key"


def signed(payload: str, ts: float, command_id: str, key: bytes = KEY) -> CommandRequest:
    topic = f"{BASE}/cmd/trigger"
    sig = command_signature(key, topic, str(ts), command_id, payload.encode())
    props = {"ts": str(ts), "command_id": command_id, "sig": sig}
    return CommandRequest(verb="trigger", topic=topic, payload=payload.encode(), user_properties=props)


@pytest.fixture
def signed_router() -> tuple[CommandRouter, Recorder]:
    auth = HmacAuthenticator(KEY, max_skew_s=30, clock=lambda: 1000.0)
    router = CommandRouter(reply=lambda *a: None, default_reply_topic="r", authenticator=auth)
    handler = Recorder()
    router.register("trigger", handler)
    return router, handler


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (request("trigger", '{"camera": "cam0"}'), "unsigned command"),
        (signed('{"camera": "cam0"}', 900.0, "a"), "stale command: ts is 100.0 s away"),
        (signed('{"camera": "cam0"}', 1000.0, "a", key=b"other"), "bad signature"),
    ],
)
def test_hmac_refuses_unsigned_stale_and_forged(
    signed_router: tuple[CommandRouter, Recorder], req: CommandRequest, reason: str
) -> None:
    router, handler = signed_router
    reply = router.handle(req)
    assert reply is not None and reason in reply["error"]
    assert handler.calls == []


def test_hmac_accepts_a_signed_command_once(signed_router: tuple[CommandRouter, Recorder]) -> None:
    router, handler = signed_router
    first = router.handle(signed('{"camera": "cam0"}', 1001.0, "id-1"))
    replay = router.handle(signed('{"camera": "cam0"}', 1001.0, "id-1"))
    assert first == {"ok": True, "verb": "trigger"}
    assert replay is not None and "replayed command: command_id 'id-1'" in replay["error"]
    assert len(handler.calls) == 1


# ----- over a real broker ----------------------------------------------------------------------------------------
@contextmanager
def stand_in_daemon(broker: Broker, state_dir: Path, authenticator: HmacAuthenticator | None = None
                    ) -> Iterator[tuple[MqttPublisher, CommandRouter]]:
    """The daemon's MQTT side and command router, connected, without cameras or a model."""
    settings = Settings(device_id="box1", mqtt=MqttConfig(port=broker.port, keepalive=5, reconnect_max_s=1))
    outbox = Outbox(StateDir(state_dir).outbox, max_bytes=1 << 20)
    publisher = MqttPublisher(settings, outbox, version="test")
    router = CommandRouter(publisher.reply, publisher.topics.default_reply, authenticator)
    publisher.on_command = router.submit_mqtt
    router.start()
    publisher.start()
    deadline = time.monotonic() + 10
    while not publisher.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield publisher, router
    finally:
        publisher.stop(drain_timeout_s=1)
        router.stop()


@pytest.fixture
def daemon(mosquitto: Broker, tmp_path: Path) -> Iterator[tuple[MqttPublisher, CommandRouter]]:
    with stand_in_daemon(mosquitto, tmp_path) as parts:
        yield parts


class HmiClient:
    """Sends commands with a response topic and correlation data, collects the replies."""

    def __init__(self, broker: Broker) -> None:
        self.replies: list[tuple[dict[str, Any], bytes | None]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hmi", protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.replies.append(
            (json.loads(m.payload), getattr(m.properties, "CorrelationData", None))
        )
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("hmi/replies", qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def send(self, verb: str, payload: str, correlation: bytes, retain: bool = False) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = "hmi/replies"
        props.CorrelationData = correlation
        self.client.publish(f"{BASE}/cmd/{verb}", payload, qos=1, retain=retain, properties=props).wait_for_publish(5)

    def wait_replies(self, count: int, timeout_s: float = 10) -> list[tuple[dict[str, Any], bytes | None]]:
        deadline = time.monotonic() + timeout_s
        while len(self.replies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.replies)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_commands_round_trip_with_correlation_data(
    mosquitto: Broker, daemon: tuple[MqttPublisher, CommandRouter]
) -> None:
    _, router = daemon
    trigger = Recorder(reply={"camera": "cam0"})
    router.register("trigger", trigger)
    hmi = HmiClient(mosquitto)
    hmi.send("trigger", '{"camera": "cam0", "part_id": "P-1"}', b"c1")
    hmi.send("trigger", '{"camera": ', b"c2")
    replies = hmi.wait_replies(2)
    hmi.close()
    assert replies[0] == ({"ok": True, "verb": "trigger", "camera": "cam0"}, b"c1")
    assert replies[1][1] == b"c2" and replies[1][0]["ok"] is False and "not JSON" in replies[1][0]["error"]
    assert [c.part_id for c in trigger.calls] == ["P-1"]


def test_retained_command_over_mqtt_is_never_executed(
    mosquitto: Broker, daemon: tuple[MqttPublisher, CommandRouter]
) -> None:
    _, router = daemon
    trigger, status = Recorder(), Recorder(reply={"state": "online"})
    router.register("trigger", trigger)
    router.register("status", status)
    hmi = HmiClient(mosquitto)
    hmi.send("trigger", '{"camera": "cam0"}', b"r1", retain=True)
    hmi.send("status", "", b"s1")  # handled after the retained one: once it is answered, the trigger was seen
    replies = hmi.wait_replies(1)
    hmi.close()
    assert replies == [({"ok": True, "verb": "status", "state": "online"}, b"s1")]
    assert trigger.calls == [] and router.ignored_retained == 1


def test_commands_signed_by_the_sender_are_executed_and_forged_ones_refused(mosquitto: Broker, tmp_path: Path) -> None:
    with stand_in_daemon(mosquitto, tmp_path, HmacAuthenticator(KEY, max_skew_s=30)) as (_, router):
        trigger = Recorder(reply={"camera": "cam0"})
        router.register("trigger", trigger)
        hmi = HmiClient(mosquitto)
        topic, payload = f"{BASE}/cmd/trigger", b'{"camera": "cam0"}'
        sent = send_command(hmi.client, topic, payload, KEY, "hmi/replies", b"good")
        send_command(hmi.client, topic, payload, b"not-the-key", "hmi/replies", b"forged")
        send_command(hmi.client, topic, payload, None, "hmi/replies", b"unsigned")
        replies = {corr: reply for reply, corr in hmi.wait_replies(3)}
        hmi.close()
    assert sent.signed and replies[b"good"] == {"ok": True, "verb": "trigger", "camera": "cam0"}
    assert "bad signature" in replies[b"forged"]["error"] and "unsigned command" in replies[b"unsigned"]["error"]
    assert len(trigger.calls) == 1
