"""The example Mosquitto ACL: only HMI identities command boxes; a box writes only its own topics."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.fixtures.broker import Broker, make_broker

ACL = Path(__file__).parents[2] / "systemd" / "mosquitto-acl.example"
USERS = ("hmi-line1", "line1-box1", "line1-box2", "dashboard")
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
])
def test_allowed_writes(broker: Broker, user: str, topic: str) -> None:
    assert puback_code(broker, user, topic) != NOT_AUTHORIZED


@pytest.mark.parametrize(("user", "topic"), [
    ("line1-box1", "edge-inspect/line1-box1/cmd/reload"),  # a box cannot command itself
    ("line1-box2", "edge-inspect/line1-box1/cmd/reload"),  # ... nor another box
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
