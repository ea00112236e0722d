"""The shipped bridge (systemd/mosquitto-bridge.conf.example), as it is, between two real Mosquittos: the box's
results reach the plant broker in seq order, and nothing is lost while the link to the plant is down for 30 s; the
plant's commands for this box come back across it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox
from agent.statedir import StateDir
from tests.agent.publish.test_mqtt import append_result, make_settings
from tests.faultproxy import FaultProxy
from tests.fixtures.broker import Broker, Subscriber, make_broker

pytestmark = pytest.mark.faults

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "mosquitto-bridge.conf.example"
DEVICE = "line1"  # the example's device_id
OUTAGE_S = 30.0
RESULTS_TOPIC = f"edge-inspect/{DEVICE}/cameras/+/result"


def bridge_conf(plant_port: int) -> str:
    """The example with only its address pointed at the test's plant broker (through the fault proxy)."""
    lines = EXAMPLE.read_text().splitlines()
    assert sum(line.startswith("address ") for line in lines) == 1
    return "\n".join(f"address 127.0.0.1:{plant_port}" if line.startswith("address ") else line for line in lines)


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Broker]:
    broker = make_broker(tmp_path / "plant")
    yield broker
    broker.stop()


@pytest.fixture
def link(plant: Broker) -> Iterator[FaultProxy]:
    with FaultProxy(plant.port) as proxy:
        yield proxy


@pytest.fixture
def box(tmp_path: Path, link: FaultProxy) -> Iterator[Broker]:
    broker = make_broker(tmp_path / "box", extra_conf=bridge_conf(link.port))
    yield broker
    broker.stop()


@pytest.fixture
def publisher(box: Broker, tmp_path: Path) -> Iterator[MqttPublisher]:
    """The daemon's publisher (outbox + paho) on the box's broker."""
    settings = make_settings(box, tmp_path, device=DEVICE)
    outbox = Outbox(StateDir(settings.state_dir).outbox, max_bytes=16 * 1024 * 1024)
    pub = MqttPublisher(settings, outbox, version="0.0-test")
    pub.start()
    yield pub
    pub.stop(drain_timeout_s=1)
    outbox.close()


def seqs_of(sub: Subscriber) -> list[int]:
    return [p["seq"] for p in sub.payloads()]


def first_copies_in_order(seqs: list[int]) -> list[int]:
    """Each seq's first arrival, in arrival order (QoS 1 across a reconnect may deliver a result twice)."""
    seen: set[int] = set()
    return [s for s in seqs if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


def feed(pub: MqttPublisher, count: int, every_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: [(append_result(pub), time.sleep(every_s)) for _ in range(count)],
                              daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(300)
def test_results_cross_the_bridge_in_order_and_none_is_lost_over_a_30_s_outage(
        plant: Broker, link: FaultProxy, box: Broker, publisher: MqttPublisher) -> None:
    consumer = Subscriber(plant, RESULTS_TOPIC, client_id="plant-consumer")
    try:
        consumer.wait_subscribed()
        feed(publisher, 20, 0.05).join()
        arrived = consumer.wait_for(lambda ps: len(ps) >= 20, timeout_s=60)
        assert [p["seq"] for p in arrived] == list(range(1, 21)), "before the outage"
        link.set_mode("cut")  # the plant is unreachable; both brokers keep running
        outage = feed(publisher, 100, OUTAGE_S / 100)
        outage.join()
        during = len(consumer.payloads())
        link.set_mode("pass")
        consumer.wait_for(lambda ps: {p["seq"] for p in ps} >= set(range(1, 121)), timeout_s=90)
        seqs = seqs_of(consumer)
    finally:
        consumer.close()
    assert during == 20, f"{during - 20} result(s) crossed a cut link"
    assert first_copies_in_order(seqs) == list(range(1, 121)), seqs
    assert publisher.outbox.depth() == 0  # the box's broker took every result: the bridge queued them


def test_commands_from_the_plant_reach_the_box_and_nothing_loops(plant: Broker, box: Broker) -> None:
    on_box = Subscriber(box, f"edge-inspect/{DEVICE}/cmd/#", client_id="daemon-stand-in")
    on_plant = Subscriber(plant, f"edge-inspect/{DEVICE}/#", client_id="plant-watcher")
    hmi = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plant-hmi", protocol=mqtt.MQTTv5)
    try:
        hmi.connect(plant.host, plant.port)
        hmi.loop_start()
        on_box.wait_subscribed()
        on_plant.wait_subscribed()
        time.sleep(2)  # both subscriptions and the bridge's own are in place once its first connect is through
        hmi.publish(f"edge-inspect/{DEVICE}/cmd/status", b'{"ping": 1}', qos=1).wait_for_publish(10)
        got = on_box.wait_for(lambda ps: bool(ps), timeout_s=30)
        time.sleep(1)
        echoed = [m for m in on_plant.messages if m.topic.endswith("/cmd/status")]
    finally:
        hmi.loop_stop()
        for sub in (on_box, on_plant):
            sub.close()
    assert got == [{"ping": 1}]
    assert len(echoed) == 1, "a command came back out of the box (a loop)"
