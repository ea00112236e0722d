"""Against a real Mosquitto: results arrive schema-valid, survive broker and publisher kills, status tells the truth."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace

import jsonschema
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig, Settings
from agent.control.commands import CommandRouter
from agent.control.replay import replay_results
from agent.detections import Detections
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox, OutboxFull
from agent.publish.result import build_result, result_schema
from agent.publish.topics import Topics
from agent.statedir import StateDir
from tests.agent.publish import producer
from tests.fixtures.broker import Broker, Subscriber

REPO = Path(__file__).resolve().parents[3]


def make_settings(broker: Broker, tmp_path: Path, device: str = "box1") -> Settings:
    mqtt = MqttConfig(port=broker.port, keepalive=5, reconnect_min_s=0.5, reconnect_max_s=1)
    return Settings(device_id=device, state_dir=tmp_path / "state", mqtt=mqtt)


@pytest.fixture
def publisher(mosquitto: Broker, tmp_path: Path) -> Iterator[MqttPublisher]:
    settings = make_settings(mosquitto, tmp_path)
    outbox = Outbox(StateDir(settings.state_dir).outbox, max_bytes=16 * 1024 * 1024)
    pub = MqttPublisher(settings, outbox, version="0.0-test")
    pub.start()
    yield pub
    pub.stop(drain_timeout_s=1)
    outbox.close()


def append_result(pub: MqttPublisher, camera: str = "cam0", part_id: str | None = None) -> int:
    dets = Detections.from_labels(["hole"], [[8, 8, 24, 30]], ["scratch", "hole"], (64, 48), score=[0.9])
    seq, _ = pub.outbox.append(
        pub.topics.result(camera),
        lambda seq, msg_id: build_result(
            seq=seq,
            msg_id=msg_id,
            device=pub.settings.device_id,
            camera=camera,
            frame_id=seq,
            part_id=part_id,
            captured_at=time.time(),
            model="tiny@1",
            verdict="fail",
            detections=dets,
            latency_ms=12.5,
        ),
    )
    pub.wake()
    return seq


def paced_results(pub: MqttPublisher, count: int, interval_s: float) -> None:
    for _ in range(count):
        append_result(pub)
        time.sleep(interval_s)


def acked_upto(outbox: Outbox) -> int:
    """Every seq up to this one has been acknowledged by the broker."""
    oldest = outbox.pending(limit=1)
    return oldest[0].seq - 1 if oldest else outbox.last_seq()


def unique_in_order(payloads: list[dict]) -> list[int]:
    """Seqs of first occurrences by msg_id (delivery is at least once; subscribers deduplicate on msg_id)."""
    seen: set[str] = set()
    seqs = []
    for p in payloads:
        if p["msg_id"] not in seen:
            seen.add(p["msg_id"])
            seqs.append(p["seq"])
    return seqs


def test_results_arrive_schema_valid_and_leave_the_outbox(mosquitto: Broker, publisher: MqttPublisher) -> None:
    sub = Subscriber(mosquitto, publisher.topics.result("+"), client_id="schema-sub")
    sub.wait_subscribed()
    sent = [append_result(publisher, part_id=f"P{i}") for i in range(5)]
    got = sub.wait_for(lambda ps: len(ps) >= 5, timeout_s=10)
    sub.close()
    assert [p["seq"] for p in got] == sent
    for payload in got:
        jsonschema.validate(payload, result_schema())
        assert datetime.fromisoformat(payload["captured_at"].replace("Z", "+00:00")).tzinfo is not None
    assert got[0]["defects"][0]["label"] == "hole" and got[0]["part_id"] == "P0"
    deadline = time.monotonic() + 5
    while publisher.outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert publisher.outbox.depth() == 0, f"{publisher.outbox.depth()} results never acknowledged"


def test_status_is_retained_online_then_offline_after_clean_stop(mosquitto: Broker, publisher: MqttPublisher) -> None:
    wait_connected(publisher)
    sub = Subscriber(mosquitto, publisher.topics.status, client_id="status-sub")
    online = sub.wait_for(lambda ps: bool(ps), timeout_s=5)
    publisher.stop(drain_timeout_s=1)
    after = sub.wait_for(lambda ps: len(ps) >= 2, timeout_s=5)
    sub.close()
    assert online[0]["state"] == "online" and online[0]["version"] == "0.0-test"
    assert after[-1]["state"] == "offline"


def test_camera_status_is_retained_and_republished(mosquitto: Broker, publisher: MqttPublisher) -> None:
    wait_connected(publisher)
    publisher.publish_camera_status("cam0", "online", frames=10, dropped=1)
    time.sleep(0.3)
    sub = Subscriber(mosquitto, publisher.topics.camera_status("cam0"), client_id="camstat-sub")
    got = sub.wait_for(lambda ps: bool(ps), timeout_s=5)
    sub.close()
    assert got[0]["state"] == "online" and got[0]["frames"] == 10 and got[0]["dropped"] == 1


def test_handshake_state_is_retained_and_acknowledged_seqs_are_reported(mosquitto: Broker,
                                                                        publisher: MqttPublisher) -> None:
    delivered: list[int] = []
    publisher.on_delivered = delivered.extend
    wait_connected(publisher)
    publisher.publish_handshake("gate", ready=False, results_pending=1, last_part_id="P-1")
    seq = append_result(publisher, "gate", part_id="P-1")
    assert wait_until(lambda: seq in delivered, timeout_s=10)
    assert publisher.outbox.depth() == 0  # reported only once the row is gone
    sub = Subscriber(mosquitto, publisher.topics.handshake("gate"), client_id="handshake-sub")
    got = sub.wait_for(lambda ps: bool(ps), timeout_s=5)
    sub.close()
    assert got[0]["last_part_id"] == "P-1" and got[0]["results_pending"] == 1 and got[0]["ts"].endswith("Z")


class Feeder:
    """Appends paced results in a thread, up to a limit the test raises phase by phase (so each broker kill lands
    mid-stream however loaded the machine is, and no phase can run ahead of the test)."""

    def __init__(self, pub: MqttPublisher, interval_s: float = 0.02) -> None:
        self.pub, self.interval_s = pub, interval_s
        self.limit = 0
        self._raised = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()

    def feed_upto(self, limit: int) -> None:
        with self._raised:
            self.limit = limit
            self._raised.notify()

    def _run(self) -> None:
        while True:
            with self._raised:
                self._raised.wait_for(lambda: self._done or self.pub.outbox.last_seq() < self.limit)
                if self._done:
                    return
            append_result(self.pub)
            time.sleep(self.interval_s)

    def close(self) -> None:
        with self._raised:
            self._done = True
            self._raised.notify()
        self._thread.join(timeout=10)


def load_consumer_example() -> ModuleType:
    """examples/consumer.py, the reference consumer the docs point to (not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("reference_consumer", REPO / "examples" / "consumer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def replaying_publisher(mosquitto: Broker, tmp_path: Path) -> Iterator[MqttPublisher]:
    """A publisher that answers `cmd/replay` as the daemon does (agent/daemon.py:Daemon._build_router)."""
    settings = make_settings(mosquitto, tmp_path)
    outbox = Outbox(StateDir(settings.state_dir).outbox, max_bytes=16 * 1024 * 1024)
    router = CommandRouter(lambda *args: pub.reply(*args), f"{settings.base_topic}/replies")
    pub = MqttPublisher(settings, outbox, version="0.0-test", on_command=router.submit_mqtt)
    router.register("replay", lambda cmd: replay_results(outbox, pub.publish_replayed, cmd))
    router.start()
    pub.start()
    yield pub
    pub.stop(drain_timeout_s=1)
    router.stop()
    outbox.close()


def crash_and_lose_state(broker: Broker) -> None:
    """SIGKILL the broker and delete its persistence file: a broker that died before it saved what it had
    acknowledged (sessions and queued QoS 1 messages lost), made certain instead of left to timing."""
    broker.kill()
    (broker.workdir / "mosquitto.db").unlink(missing_ok=True)
    broker.start()


@pytest.mark.faults
def test_broker_killed_mid_stream_every_seq_arrives_once_in_order(
    mosquitto: Broker, replaying_publisher: MqttPublisher
) -> None:
    """The end-to-end guarantee: the reference consumer hands its application every seq exactly once, in order,
    across broker kills, even results the broker acknowledged and then lost (recovered with cmd/replay)."""
    pub, total = replaying_publisher, 120
    delivered: list[dict] = []  # type: ignore[type-arg]
    consumer = load_consumer_example().ReplayConsumer(
        mosquitto.host, mosquitto.port, pub.settings.device_id, delivered.append, client_id="persistent-consumer",
        gap_grace_s=0.5, idle_probe_s=2.0)
    wire = Subscriber(mosquitto, pub.topics.result("+"), client_id="wire-order-sub")  # raw arrivals, no replay logic
    feeder = Feeder(pub)
    try:
        assert consumer.subscribed.wait(10), "consumer never subscribed"
        wire.wait_subscribed()
        wait_connected(pub)
        for upto, kill_at in ((40, 20), (80, 60)):  # plain SIGKILLs while results are in flight
            feeder.feed_upto(upto)
            reached = wait_until(lambda: acked_upto(pub.outbox) >= kill_at, timeout_s=60)  # noqa: B023
            assert reached, f"acked only up to {acked_upto(pub.outbox)}"
            mosquitto.restart()
            wait_connected(pub)
        # broker-side loss, for certain: results acknowledged to the publisher while the consumer is away, then the
        # broker crashes without having saved them
        assert wait_until(lambda: acked_upto(pub.outbox) >= 80, timeout_s=60), f"acked {acked_upto(pub.outbox)}"
        consumer.client.disconnect()
        consumer.client.loop_stop()
        feeder.feed_upto(100)
        assert wait_until(lambda: acked_upto(pub.outbox) >= 100, timeout_s=60), f"acked {acked_upto(pub.outbox)}"
        crash_and_lose_state(mosquitto)
        consumer.client.reconnect()
        consumer.client.loop_start()
        wait_connected(pub)
        feeder.feed_upto(total)
        wait_until(lambda: len(delivered) >= total, timeout_s=90)
    finally:
        feeder.close()
        consumer.close()
        wire.close()
    seqs = [r["seq"] for r in delivered]
    assert seqs == list(range(1, total + 1)), (
        f"{len(seqs)} delivered of {total}: {seqs[:5]}...{seqs[-5:]}; missing "
        f"{sorted(set(range(1, total + 1)) - set(seqs))[:10]}; replays asked {consumer.replays_asked}"
    )
    assert len({r["msg_id"] for r in delivered}) == total
    assert any(r.get("replay") for r in delivered[80:100]), "the results lost at the broker did not come by replay"
    assert pub.stats.reconnects == 3
    first_arrivals = first_normal_arrivals(wire.payloads())
    assert first_arrivals == sorted(first_arrivals), f"first arrivals out of seq order (docs/mqtt.md, Ordering): " \
        f"{[(a, b) for a, b in itertools.pairwise(first_arrivals) if b < a]}"


def first_normal_arrivals(payloads: list[dict]) -> list[int]:  # type: ignore[type-arg]
    """Seqs in the order their first copy arrived, replays left out (a lost result comes back only by replay)."""
    seen: set[int] = set()
    order = []
    for payload in payloads:
        if not payload.get("replay") and payload["seq"] not in seen:
            seen.add(payload["seq"])
            order.append(payload["seq"])
    return order


class RecordingClient:
    """Stands in for paho: records what the publisher hands it (no network, so the test decides every PUBACK)."""

    def __init__(self) -> None:
        self.results: list[tuple[int, int]] = []  # (mid, seq) of result publishes, in hand-over order
        self._mid = 0

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, properties: object = None):  # type: ignore[no-untyped-def]
        self._mid += 1
        if topic.endswith("/result"):
            self.results.append((self._mid, json.loads(payload)["seq"]))
        return SimpleNamespace(mid=self._mid)

    def subscribe(self, *args: object, **kwargs: object) -> None:
        pass


def test_after_a_reconnect_new_results_wait_until_the_ones_in_flight_are_settled(tmp_path: Path) -> None:
    """paho resends the in-flight results only after on_connect: a new result handed at once could overtake them."""
    settings = Settings(device_id="box1", state_dir=tmp_path / "state", mqtt=MqttConfig(port=1, inflight=3))
    pub = MqttPublisher(settings, Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20), version="t")
    fake = RecordingClient()
    pub.client = fake  # type: ignore[assignment]
    connack, puback = ReasonCode(PacketTypes.CONNACK, identifier=0), ReasonCode(PacketTypes.PUBACK, identifier=0)
    for _ in range(6):
        append_result(pub)
    pub._on_connect(fake, None, SimpleNamespace(session_present=False), connack, None)  # type: ignore[arg-type]
    pub._fill_window()
    mids = {seq: mid for mid, seq in fake.results}
    assert list(mids) == [1, 2, 3]
    pub._on_disconnect(fake, None, None, ReasonCode(PacketTypes.DISCONNECT, identifier=0), None)  # type: ignore[arg-type]
    pub._on_connect(fake, None, SimpleNamespace(session_present=True), connack, None)  # type: ignore[arg-type]

    def ack(seq: int) -> list[int]:
        pub._on_publish(fake, None, mids[seq], puback, None)  # type: ignore[arg-type]
        pub._settle_acks()
        pub._fill_window()
        return [seq for _, seq in fake.results]

    assert ack(1) == [1, 2, 3]  # 2 and 3 are being resent: nothing new goes out before them
    assert ack(3) == [1, 2, 3]
    assert ack(2) == [1, 2, 3, 4, 5, 6]
    pub.outbox.close()


def run_producer(state: Path, port: int, count: int, rate_hz: float) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.agent.publish.producer", str(state), str(port), str(count), str(rate_hz)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> None:
    """Read the producer's stdout until a line equals `marker` (a watchdog kills it if that takes too long)."""
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == marker:
                return
        raise AssertionError(f"producer ended (rc {proc.wait()}) before printing {marker!r}")
    finally:
        timer.cancel()


@pytest.mark.faults
def test_publisher_sigkilled_mid_stream_loses_no_seq_after_restart(mosquitto: Broker, tmp_path: Path) -> None:
    topics = Topics(f"edge-inspect/{producer.DEVICE}")
    sub = Subscriber(mosquitto, topics.result("+"), client_id="sigkill-sub")
    sub.wait_subscribed()
    total = 60
    first = run_producer(tmp_path, mosquitto.port, total, rate_hz=40)
    read_until(first, "appended 25", timeout_s=30)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    second = run_producer(tmp_path, mosquitto.port, total, rate_hz=40)
    read_until(second, "drained", timeout_s=60)
    second.wait(timeout=10)
    got = sub.wait_for(lambda ps: len(unique_in_order(ps)) >= total, timeout_s=10)
    sub.close()
    assert unique_in_order(got) == list(range(1, total + 1)), f"got {len(unique_in_order(got))} unique of {total}"
    assert Outbox(StateDir(tmp_path).outbox, max_bytes=1 << 20).integrity_check() == "ok"


@pytest.mark.faults
def test_will_reports_offline_when_the_publisher_is_killed(mosquitto: Broker, tmp_path: Path) -> None:
    topics = Topics(f"edge-inspect/{producer.DEVICE}")
    proc = run_producer(tmp_path, mosquitto.port, 10_000, rate_hz=20)
    read_until(proc, "appended 3", timeout_s=30)
    sub = Subscriber(mosquitto, topics.status, client_id="lwt-sub")
    online = sub.wait_for(lambda ps: any(p["state"] == "online" for p in ps), timeout_s=10)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    got = sub.wait_for(lambda ps: bool(ps) and ps[-1]["state"] == "offline", timeout_s=15)
    sub.close()
    assert online and online[0]["state"] == "online"
    assert got[-1]["state"] == "offline", f"status messages: {got}"


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def wait_connected(pub: MqttPublisher, timeout_s: float = 10) -> None:
    assert wait_until(lambda: pub.connected, timeout_s), f"publisher never connected: {pub.stats.last_error}"


def test_full_outbox_raises_an_alarm_event_that_clears_after_delivery(mosquitto: Broker, tmp_path: Path) -> None:
    settings = make_settings(mosquitto, tmp_path, device="small")
    pub = MqttPublisher(settings, Outbox(tmp_path / "small.sqlite", max_bytes=4000, alarm_fraction=0.5), "t")
    sub = Subscriber(mosquitto, pub.topics.events, client_id="alarm-sub")
    sub.wait_subscribed()
    mosquitto.stop()
    pub.start()
    with pytest.raises(OutboxFull):
        while True:
            append_result(pub)
    stored = pub.outbox.depth()
    mosquitto.start()
    got = sub.wait_for(lambda ps: any(p["event"] == "outbox_alarm" and not p["active"] for p in ps), timeout_s=20)
    pub.stop(drain_timeout_s=1)
    sub.close()
    alarms = [p for p in got if p["event"] == "outbox_alarm"]
    assert alarms and alarms[0]["active"] is True and alarms[0]["refused"] == 0  # past alarm_fraction, before full
    assert any(a["active"] and a["refused"] == 1 and a["depth"] == stored for a in alarms), alarms
    assert alarms[-1]["active"] is False and alarms[-1]["depth"] < stored
