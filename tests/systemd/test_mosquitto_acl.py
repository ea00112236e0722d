"""The example Mosquitto ACL: only HMI identities command boxes; a box writes only its own topics."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import structlog
from pydantic import SecretStr

from agent.config import CommandsConfig, MqttConfig, Settings
from agent.control.sender import CommandRefused, send_command
from calibration.notify import Events, reload_daemon
from calibration.report import RunError
from tests.fixtures.broker import Broker, make_broker

ACL = Path(__file__).parents[2] / "systemd" / "mosquitto-acl.example"
USERS = ("hmi-line1", "line1-box1", "line1-box2", "dashboard", "results-consumer")
NOT_AUTHORIZED = 135  # MQTT v5 reason code in PUBACK

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd (mosquitto) is not installed"
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    workdir = tmp_path_factory.mktemp("acl-broker")
    passwd = workdir / "passwd"
    for i, user in enumerate(USERS):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, f"pw-{user}"],
                       check=True, capture_output=True)
    conf = f"allow_anonymous false\npassword_file {passwd}\nacl_file {ACL}\n"
    broker = make_broker(workdir, extra_conf=conf)
    yield broker
    broker.stop()


def connect(broker: Broker, user: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"acl-test-{user}", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, f"pw-{user}")
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert connected.wait(5), f"{user} could not connect"
    return client


def puback_code(broker: Broker, user: str, topic: str) -> int:
    """Publish QoS 1 as `user` and return the broker's PUBACK reason code."""
    codes: dict[int, int] = {}
    acked = threading.Event()

    def on_publish(_c: object, _u: object, mid: int, reason: mqtt.ReasonCode, _p: object) -> None:
        codes[mid] = reason.value
        acked.set()

    client = connect(broker, user)
    client.on_publish = on_publish
    try:
        info = client.publish(topic, b'{"test": true}', qos=1)
        assert acked.wait(5), f"no PUBACK for {user} -> {topic}"
        return codes[info.mid]
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize(("user", "topic"), [
    ("hmi-line1", "edge-inspect/line1-box1/cmd/reload"),
    ("line1-box1", "edge-inspect/line1-box1/cameras/cam0/result"),
    ("line1-box1", "edge-inspect/line1-box1/status"),
    ("line1-box1", "edge-inspect/line1-box1/events"),
    ("line1-box1", "hmi/replies/req-1"),
    ("line1-box1", "edge-inspect/line1-box1/cmd/reload"),  # its own recalibration run's notify (same user)
    ("results-consumer", "edge-inspect/line1-box1/cmd/replay"),
])
def test_allowed_writes(broker: Broker, user: str, topic: str) -> None:
    assert puback_code(broker, user, topic) != NOT_AUTHORIZED


@pytest.mark.parametrize(("user", "topic"), [
    ("line1-box1", "edge-inspect/line1-box1/cmd/trigger"),  # a box commands itself only to reload
    ("line1-box1", "edge-inspect/line1-box1/cmd/replay"),
    ("line1-box2", "edge-inspect/line1-box1/cmd/reload"),  # ... and never another box
    ("results-consumer", "edge-inspect/line1-box1/cmd/reload"),  # a consumer may only ask for replays
    ("results-consumer", "edge-inspect/line1-box1/cameras/cam0/result"),
    ("dashboard", "edge-inspect/line1-box1/cmd/reload"),  # read-only identities cannot command
    ("line1-box2", "edge-inspect/line1-box1/cameras/cam0/result"),  # no impersonating another box
    ("line1-box2", "edge-inspect/line1-box1/status"),
    ("hmi-line1", "edge-inspect/line1-box1/cameras/cam0/result"),  # HMIs do not forge results
])
def test_denied_writes(broker: Broker, user: str, topic: str) -> None:
    assert puback_code(broker, user, topic) == NOT_AUTHORIZED


def test_a_box_receives_commands_from_an_hmi(broker: Broker) -> None:
    received = threading.Event()
    subscribed = threading.Event()
    box = connect(broker, "line1-box1")
    box.on_subscribe = lambda *_args: subscribed.set()
    box.on_message = lambda _c, _u, message: received.set()
    try:
        box.subscribe("edge-inspect/line1-box1/cmd/#", qos=1)
        assert subscribed.wait(5)
        assert puback_code(broker, "hmi-line1", "edge-inspect/line1-box1/cmd/status") == 0
        assert received.wait(5), "the command did not reach the box"
    finally:
        box.disconnect()
        box.loop_stop()


def box_settings(broker: Broker, user: str, device: str = "line1-box1") -> Settings:
    mqtt_cfg = MqttConfig(port=broker.port, keepalive=5, username=user, password=SecretStr(f"pw-{user}"))
    return Settings(device_id=device, mqtt=mqtt_cfg, commands=CommandsConfig(hmac_key=SecretStr("acl-test-key")))


def test_notify_mqtt_reloads_its_own_box_under_the_shipped_acl(broker: Broker) -> None:
    """recalibration.notify: mqtt connects with the box's own credentials; the ACL must let its cmd/reload through."""
    received = threading.Event()
    subscribed = threading.Event()
    box = connect(broker, "line1-box1")
    box.on_subscribe = lambda *_args: subscribed.set()
    box.on_message = lambda _c, _u, message: received.set()
    try:
        box.subscribe("edge-inspect/line1-box1/cmd/#", qos=1)
        assert subscribed.wait(5)
        sent = reload_daemon(box_settings(broker, "line1-box1"))
        assert sent == {"topic": "edge-inspect/line1-box1/cmd/reload", "signed": True}
        assert received.wait(5), "the reload did not reach the box"
    finally:
        box.disconnect()
        box.loop_stop()


def test_a_reload_the_acl_refuses_is_reported_not_ignored(broker: Broker) -> None:
    """A box configured with another box's user name: the broker answers 0x87, and the run says so."""
    with pytest.raises(RunError, match=r"refused by the broker for MQTT user line1-box2.*0x87"):
        reload_daemon(box_settings(broker, "line1-box2"))


def test_a_refused_command_raises_command_refused(broker: Broker) -> None:
    client = connect(broker, "dashboard")
    try:
        with pytest.raises(CommandRefused, match=r"Not authorized \(reason code 0x87\)"):
            send_command(client, "edge-inspect/line1-box1/cmd/reload", b"{}", timeout_s=5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_refused_recalibration_event_is_logged_as_a_warning(broker: Broker) -> None:
    events = Events(box_settings(broker, "dashboard"), mqtt_enabled=True)
    assert events.client is not None
    try:
        with structlog.testing.capture_logs() as logs:
            events("recalibration_progress", run_id="r1", step="train", state="started")
    finally:
        events.close()
    refused = [e for e in logs if e["event"] == "event refused by the broker"]
    assert refused and refused[0]["log_level"] == "warning" and "0x87" in refused[0]["error"]
    assert refused[0]["user"] == "dashboard"
