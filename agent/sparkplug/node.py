"""The Sparkplug B edge node: one paho-mqtt 2.x client from `agent.publish.client.create_client` and one thread
(`sparkplug`) that owns every decision; paho's callbacks only queue what happened.

Session: CONNECT (clean start) with the NDEATH as will, subscribe to NCMD, DCMD and our own DDATA (the delivery
confirmation of agent/sparkplug/feed.py), then NBIRTH (seq 0) and one DBIRTH per enabled camera, then a DDATA per
stored result in outbox order. A camera that goes offline gets a DDEATH, and a DBIRTH when it is back. seq counts
every message but the NDEATH, 0-255 wrapping. The NDEATH carries the bdSeq of its session's NBIRTH
(agent/sparkplug/state.py). Messages are QoS 0 and not retained, as the specification asks; the NDEATH is QoS 1.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.config import MqttConfig
from agent.publish.client import Will, connect_in_background, create_client
from agent.publish.outbox import Outbox
from agent.sparkplug import metrics as m
from agent.sparkplug.commands import CommandRejected, device_commands, node_commands
from agent.sparkplug.feed import OutboxFeed, StoredResult
from agent.sparkplug.state import NodeState, load_state, next_bdseq, save_state

log = structlog.get_logger("agent.sparkplug")

NAMESPACE = "spBv1.0"
BATCH = 64  # results published per pass of the loop
SAVE_INTERVAL_S = 1.0  # the cursor is written at most this often (and at stop)
GOODBYE_TIMEOUT_S = 2.0  # how long stop waits for the broker to acknowledge the NDEATH
TriggerAnswer = Callable[[str, str | None], str]  # (camera, part id) -> accepted / busy / overflow / refused


@dataclass(frozen=True)
class SparkplugTopics:
    """spBv1.0/{group}/{message type}/{edge node}[/{device}]."""

    group: str
    node: str

    def of_node(self, kind: str) -> str:
        return f"{NAMESPACE}/{self.group}/{kind}/{self.node}"

    def of_device(self, kind: str, device: str) -> str:
        return f"{self.of_node(kind)}/{device}"

    def device_in(self, topic: str, kind: str) -> str | None:
        """The device of a `kind` topic of this node, else None."""
        head = self.of_node(kind) + "/"
        rest = topic[len(head):] if topic.startswith(head) else ""
        return rest if rest and "/" not in rest else None


@dataclass
class NodeStats:
    connects: int = 0
    births: int = 0  # NBIRTHs (connects and rebirths)
    published: int = 0  # messages handed to paho
    rejected: int = 0  # commands refused (malformed, unknown, not allowed, retained)


class EdgeNode:
    """The edge node `topics.node`, with one device per camera in `cameras` (name -> mode)."""

    def __init__(self, topics: SparkplugTopics, broker: MqttConfig, client_id: str, info: m.NodeInfo,
                 cameras: Mapping[str, str], outbox: Outbox, state_path: Path, trigger: TriggerAnswer,
                 allow_commands: bool) -> None:
        self.topics, self.broker, self.info, self.cameras = topics, broker, info, cameras
        self.trigger, self.allow_commands, self.state_path = trigger, allow_commands, state_path
        self.stats = NodeStats()
        self._state_lock = threading.Lock()  # bdSeq and the file: the network thread advances, both threads save
        state = load_state(state_path)
        self._bdseq = next_bdseq(state.bdseq)  # the will's, for the next CONNECT (network thread)
        self.feed = OutboxFeed(outbox, state.cursor, assume_after_s=3.0 * broker.keepalive)
        self._save()
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._session_bdseq: int | None = None  # the current session's (None: no NBIRTH on this link)
        self._seq = 0
        self._born: set[str] = set()
        self._online: dict[str, bool] = {}
        self._reported = (0, 0)  # (rejected, skipped) last published
        self._saved, self._saved_at = self.feed.confirmed, time.monotonic()
        self._thread: threading.Thread | None = None
        self._heartbeat = time.monotonic()
        self.client = create_client(broker, client_id, Will(topics.of_node("NDEATH"), m.node_death(self._bdseq),
                                                             qos=1, retain=False))
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_message, self.client.on_subscribe = self._on_message, self._on_subscribe

    # ----- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        connect_in_background(self.client, self.broker, fresh_sessions=True)
        self._thread = threading.Thread(target=self._run, name="sparkplug", daemon=True)
        self._thread.start()
        log.info("sparkplug edge node starting", node=self.topics.of_node("NBIRTH"), bdseq=self._bdseq,
                 host=self.broker.host, port=self.broker.port, cameras=list(self.cameras))

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Send what the outbox holds (up to `drain_timeout_s`), publish the NDEATH, disconnect, keep the cursor."""
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline and self._session_bdseq is not None and not self.feed.caught_up():
            self.wake()
            time.sleep(0.05)
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._say_goodbye()
        self.client.loop_stop()
        self._save()
        log.info("sparkplug edge node stopped", cursor=self.feed.confirmed, bdseq=self._bdseq)

    def wake(self) -> None:
        """New results are in the outbox."""
        self._events.put(("wake",))

    def camera_status(self, camera: str, status: str) -> None:
        """A camera went online or offline (capture threads)."""
        self._events.put(("camera", camera, status == "online"))

    def alive(self, max_age_s: float) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and time.monotonic() - self._heartbeat < max_age_s

    # ----- paho callbacks (network thread: queue and return) ---------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            log.error("sparkplug connect refused", reason=str(reason))
            return
        commands = SubscribeOptions(qos=1, retainAsPublished=True)  # so a retained command shows as one
        client.subscribe([(self.topics.of_node("NCMD"), commands), (self.topics.of_device("DCMD", "+"), commands),
                          (self.topics.of_device("DDATA", "+"), SubscribeOptions(qos=0))])
        self._events.put(("connected", self._bdseq))

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if not self._stop.is_set():  # the next CONNECT carries a will with the next bdSeq
            with self._state_lock:
                self._bdseq = next_bdseq(self._bdseq)
                save_state(self.state_path, NodeState(self._bdseq, self.feed.confirmed))
            client.will_set(self.topics.of_node("NDEATH"), m.node_death(self._bdseq), qos=1, retain=False)
            log.warning("sparkplug disconnected", reason=str(reason), next_bdseq=self._bdseq)
        self._events.put(("disconnected",))

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        self._events.put(("message", message.topic, bytes(message.payload), bool(message.retain)))

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:  # NCMD/DCMD: no commands; DDATA: results are confirmed by age instead
            log.warning("sparkplug subscriptions refused by the broker (ACL?)", reasons=refused)

    # ----- the sparkplug thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        backlog = False
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()
            try:
                self._handle_events(timeout_s=0.0 if backlog else 0.2)
                backlog = False
                if self._session_bdseq is not None:
                    backlog = self._publish_results()
                    self.feed.confirm_aged()
                    self._report_counters()
                self._save_now_and_then()
            except Exception as exc:  # keep serving: one bad pass must not end the node
                log.exception("sparkplug pass failed; retrying", error=repr(exc))
                self._stop.wait(1.0)

    def _handle_events(self, timeout_s: float) -> None:
        try:
            event = self._events.get(timeout=timeout_s) if timeout_s > 0 else self._events.get_nowait()
            while True:
                self._handle(event)
                event = self._events.get_nowait()
        except queue.Empty:
            return

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "connected":
            self.stats.connects += 1
            self._begin_session(event[1])
        elif kind == "disconnected":
            self._session_bdseq = None
            self.feed.restart()
        elif kind == "camera":
            self._camera_changed(event[1], event[2])
        elif kind == "message":
            self._message(event[1], event[2], event[3])

    def _begin_session(self, bdseq: int) -> None:
        self.feed.restart()
        self._session_bdseq = bdseq
        self._birth()
        log.info("sparkplug session born", bdseq=bdseq, devices=sorted(self._born), resend_after=self.feed.confirmed)

    def _birth(self) -> None:
        """NBIRTH (seq 0) and a DBIRTH for each camera not known to be offline: on connect and on Rebirth."""
        assert self._session_bdseq is not None
        self._seq, self._born = 0, set()
        values = m.node_birth(self._session_bdseq, self.info, self.stats.rejected, self.feed.skipped)
        self._publish(self.topics.of_node("NBIRTH"), values)
        self.stats.births += 1
        for camera in self.cameras:
            if self._online.get(camera, True):
                self._device_birth(camera)

    def _device_birth(self, camera: str) -> None:
        values = m.result_values(self.feed.last.get(camera)) + m.counter_values(self.feed.counts.get(camera, {}))
        if self.allow_commands and self.cameras[camera] == "trigger":
            values += m.trigger_values(None, "")
        self._publish(self.topics.of_device("DBIRTH", camera), values)
        self._born.add(camera)

    def _device_death(self, camera: str) -> None:
        self._publish(self.topics.of_device("DDEATH", camera), [])
        self._born.discard(camera)

    def _camera_changed(self, camera: str, online: bool) -> None:
        self._online[camera] = online
        if self._session_bdseq is None or camera not in self.cameras or online == (camera in self._born):
            return
        if online:
            self._device_birth(camera)
        else:
            self._device_death(camera)

    def _publish_results(self) -> bool:
        """Publish the next stored results; True when there may be more waiting (a full batch went out)."""
        batch = self.feed.take(BATCH)
        for stored in batch:
            if stored.camera not in self.cameras:
                log.warning("result of a camera that is not a Sparkplug device, not sent", seq=stored.seq,
                            camera=stored.camera)
            elif not self._publish_result(stored):
                self._session_bdseq = None  # the link went: the next session sends these again
                self.feed.restart()
                return False
            self.feed.sent(stored.seq)
        return len(batch) == BATCH

    def _publish_result(self, stored: StoredResult) -> bool:
        camera, reborn = stored.camera, stored.camera not in self._born
        if reborn:  # a result from before its camera went offline: alive for this one message
            self._device_birth(camera)
        self.feed.count(stored)
        values = m.result_values(stored.result) + m.counter_values(self.feed.counts[camera])
        captured = m.rfc3339_ms(stored.result["captured_at"])
        sent = self._publish(self.topics.of_device("DDATA", camera), values, metric_time=captured)
        if reborn and not self._online.get(camera, True):
            self._device_death(camera)
        return sent

    def _publish(self, topic: str, values: list[m.Value], metric_time: int | None = None) -> bool:
        seq, self._seq = self._seq, (self._seq + 1) % 256
        info = self.client.publish(topic, m.payload(values, seq, metric_time=metric_time), qos=0, retain=False)
        self.stats.published += 1
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def _report_counters(self) -> None:
        """NDATA whenever a command was rejected or results were skipped."""
        now = (self.stats.rejected, self.feed.skipped)
        if now != self._reported:
            self._reported = now
            self._publish(self.topics.of_node("NDATA"), m.node_counters(*now))

    def _save_now_and_then(self) -> None:
        if self.feed.confirmed != self._saved and time.monotonic() - self._saved_at >= SAVE_INTERVAL_S:
            self._save()
            self._saved, self._saved_at = self.feed.confirmed, time.monotonic()

    def _save(self) -> None:
        with self._state_lock:
            save_state(self.state_path, NodeState(self._bdseq, self.feed.confirmed))

    # ----- commands and confirmations --------------------------------------------------------------------------
    def _message(self, topic: str, raw: bytes, retained: bool) -> None:
        if self.topics.device_in(topic, "DDATA") is not None:
            seq = m.result_seq(raw)
            if seq is not None:
                self.feed.confirm_upto(seq)
            return
        try:
            if retained:
                raise CommandRejected("a retained command is never carried out (it would run on every reconnect)")
            if topic == self.topics.of_node("NCMD"):
                self._node_command(raw)
            elif (device := self.topics.device_in(topic, "DCMD")) is not None:
                self._device_command(device, raw)
        except CommandRejected as exc:
            self.stats.rejected += 1
            log.warning("sparkplug command rejected", topic=topic, reason=str(exc), rejected=self.stats.rejected)

    def _node_command(self, raw: bytes) -> None:
        for _ in node_commands(raw):
            if self._session_bdseq is not None:
                log.info("sparkplug rebirth requested")
                self._birth()

    def _device_command(self, camera: str, raw: bytes) -> None:
        if camera not in self.cameras:
            raise CommandRejected(f"DCMD for {camera!r}, not a device of this node; devices: {sorted(self.cameras)}")
        for command in device_commands(raw, camera, self.allow_commands):
            answer = self.trigger(command.camera, command.part_id)
            log.info("sparkplug trigger", camera=camera, part_id=command.part_id, answer=answer)
            if camera in self._born:
                self._publish(self.topics.of_device("DDATA", camera), m.trigger_values(command.part_id, answer))

    def _say_goodbye(self) -> None:
        """NDEATH at QoS 1, then DISCONNECT; when the NDEATH is not acknowledged, the broker sends the will instead."""
        if self._session_bdseq is None or not self.client.is_connected():
            self.client.disconnect()
            return
        info = self.client.publish(self.topics.of_node("NDEATH"), m.node_death(self._session_bdseq), qos=1)
        try:
            info.wait_for_publish(timeout=GOODBYE_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            log.warning("sparkplug NDEATH not confirmed; leaving it to the will", error=str(exc))
        reason = None if info.is_published() else ReasonCode(PacketTypes.DISCONNECT, identifier=0x04)
        self.client.disconnect(reasoncode=reason)
