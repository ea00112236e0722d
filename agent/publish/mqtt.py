"""MQTT side of the daemon: one paho-mqtt 2.x client (MQTT v5, built by `agent.publish.client`) that drains the outbox
and carries status, events (`agent.publish.events`) and command replies. Topics and payloads: docs/mqtt.md.

Threads: paho's network thread (callbacks only record and wake) and one drain thread that owns every decision:
it hands outbox rows to paho in `seq` order, at most `mqtt.inflight` unacknowledged at a time, and marks rows delivered
once their PUBACK arrived (the outbox keeps them for `cmd/replay`, agent/control/replay.py). While the link is down
paho keeps its unacknowledged messages and resends them on reconnect (same session: clean_start=False + session
expiry); after a restart the drain starts again from the oldest row.
Delivery is at least once: a subscriber may see a msg_id twice (resent after a lost PUBACK) and must deduplicate.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.config import Settings
from agent.publish.client import Will, connect_in_background, create_client
from agent.publish.events import encode_event, now_rfc3339
from agent.publish.outbox import Outbox, OutboxRow
from agent.publish.result import as_replay
from agent.publish.topics import Topics

log = structlog.get_logger(__name__)

PAHO_EXTRA_INFLIGHT = 4  # room for status/events/replies beside the result window
EVENT_BUFFER = 256  # events kept while disconnected (status topics are kept as latest-per-topic instead)
REJECTED_RETRY_S = 5.0  # a result the broker refused (reason code >= 0x80) is resent after this long


@dataclass
class PublisherStats:
    connects: int = 0
    disconnects: int = 0
    published: int = 0  # result publishes handed to paho (resends after a restart included)
    acked: int = 0  # results marked delivered in the outbox after PUBACK
    rejected: int = 0  # PUBACKs with a failure reason code
    replayed: int = 0  # delivered results sent again on cmd/replay
    events_dropped: int = 0  # events that overflowed the disconnected buffer
    last_error: str | None = None

    @property
    def reconnects(self) -> int:
        return max(self.connects - 1, 0)


@dataclass
class _Shared:
    """State written by paho callbacks and read by the drain thread."""

    connected: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)
    reconnected: threading.Event = field(default_factory=threading.Event)  # set before `connected` on every connect
    acks: queue.SimpleQueue[tuple[int, bool, str]] = field(default_factory=queue.SimpleQueue)


class MqttPublisher:
    """Connects, keeps `status` truthful, drains the outbox, forwards `cmd/+` messages to `on_command`."""

    def __init__(
        self,
        settings: Settings,
        outbox: Outbox,
        version: str,
        on_command: Callable[[mqtt.MQTTMessage], None] | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.version = version
        self.on_command = on_command
        self.on_delivered: Callable[[list[int]], None] | None = None  # seqs the broker acknowledged (drain thread)
        self.topics = Topics(settings.base_topic)
        self.stats = PublisherStats()
        self._shared = _Shared()
        self._window = settings.mqtt.inflight
        self._inflight: dict[int, int] = {}  # paho mid -> seq; drain thread only
        self._handed_upto = 0  # highest seq handed to paho in this process
        self._resend_barrier: set[int] = set()  # mids in flight at the last connect; drain thread only
        self._retry_at: dict[int, float] = {}  # rejected seq -> when to resend
        self._retained: dict[str, bytes] = {}  # camera status/handshake topic -> latest payload, republished on connect
        self._events: deque[bytes] = deque(maxlen=EVENT_BUFFER)
        self._lock = threading.Lock()  # guards _retained and _events
        self._stop = threading.Event()
        self._heartbeat = time.monotonic()
        self._drain_thread: threading.Thread | None = None
        self.client = self._make_client()

    # ----- client setup ----------------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        will = Will(self.topics.status, self._status_payload("offline"), qos=1, retain=True)
        client = create_client(self.settings.mqtt, self.settings.client_id, will)
        client.max_inflight_messages_set(self._window + PAHO_EXTRA_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _status_payload(self, state: str) -> bytes:
        return json.dumps({"state": state, "ts": now_rfc3339(), "version": self.version}).encode()

    # ----- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start draining the outbox."""
        cfg = self.settings.mqtt
        connect_in_background(self.client, cfg, session_expiry_s=cfg.session_expiry_s)
        self._drain_thread = threading.Thread(target=self._drain_loop, name="mqtt-drain", daemon=True)
        self._drain_thread.start()
        log.info("mqtt starting", host=cfg.host, port=cfg.port, client_id=self.settings.client_id)

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Deliver what the outbox holds (up to `drain_timeout_s`), publish `offline`, disconnect."""
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline and self.outbox.depth() > 0 and self.connected:
            self.wake()
            time.sleep(0.05)
        self._stop.set()
        self.wake()
        if self._drain_thread is not None:
            self._drain_thread.join(timeout=5)
        if self.connected:
            info = self.client.publish(self.topics.status, self._status_payload("offline"), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(deadline - time.monotonic(), 1.0))
            except (RuntimeError, ValueError) as exc:  # link lost meanwhile: the will says offline instead
                log.warning("offline status not confirmed", error=str(exc))
        self.client.disconnect()
        self.client.loop_stop()
        log.info("mqtt stopped", outbox_depth=self.outbox.depth())

    @property
    def connected(self) -> bool:
        return self._shared.connected.is_set()

    def wake(self) -> None:
        """Tell the drain thread that the outbox has new rows (call after `Outbox.append`)."""
        self._shared.wake.set()

    def alive(self, max_age_s: float = 5.0) -> bool:
        """True while the drain thread is looping (for the systemd watchdog); says nothing about the broker."""
        thread = self._drain_thread
        return thread is not None and thread.is_alive() and time.monotonic() - self._heartbeat < max_age_s

    # ----- paho callbacks (network thread: record and wake, never block) ----------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self.stats.last_error = f"connect refused: {reason}"
            log.error("mqtt connect refused", reason=str(reason))
            return
        self.stats.connects += 1
        self._shared.reconnected.set()
        self._shared.connected.set()
        client.publish(self.topics.status, self._status_payload("online"), qos=1, retain=True)
        client.subscribe(self.topics.commands, options=SubscribeOptions(qos=1, retainAsPublished=True))
        self._flush_buffered(client)
        log.info("mqtt connected", session_present=bool(flags.session_present), connects=self.stats.connects)
        self.wake()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        was_connected = self._shared.connected.is_set()
        self._shared.connected.clear()
        if was_connected:
            self.stats.disconnects += 1
            # our own disconnect at shutdown is routine; any other is worth a warning
            level = log.info if self._stop.is_set() and not reason.is_failure else log.warning
            level("mqtt disconnected", reason=str(reason), in_flight=len(self._inflight))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._shared.acks.put((mid, bool(reason.is_failure), str(reason)))
        self.wake()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if self.on_command is not None and self.topics.command_verb(message.topic) is not None:
            self.on_command(message)

    # ----- status, events, replies -----------------------------------------------------------------------------
    def publish_camera_status(self, camera: str, state: str, **counters: Any) -> None:
        """Retained `cameras/{camera}/status`; the latest one is republished after every reconnect."""
        self._publish_retained(self.topics.camera_status(camera), {"state": state, **counters})

    def publish_handshake(self, camera: str, **fields: Any) -> None:
        """Retained `cameras/{camera}/handshake` (trigger mode), republished after every reconnect like the status."""
        self._publish_retained(self.topics.handshake(camera), fields)

    def _publish_retained(self, topic: str, fields: dict[str, Any]) -> None:
        with self._lock:  # under the lock: two threads' states reach the broker in the order they were stored
            payload = json.dumps({**fields, "ts": now_rfc3339()}).encode()
            self._retained[topic] = payload
            if self.connected:
                self.client.publish(topic, payload, qos=1, retain=True)

    def publish_event(self, kind: str, **fields: Any) -> None:
        """An `events` message (model changes, alarms, recalibration); buffered (bounded) while disconnected."""
        payload = encode_event(kind, self.settings.device_id, **fields)
        if self.connected:
            self.client.publish(self.topics.events, payload, qos=1)
            return
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.stats.events_dropped += 1
                log.warning("event buffer full, oldest event dropped", dropped=self.stats.events_dropped)
            self._events.append(payload)

    def reply(self, topic: str, payload: dict[str, Any], correlation_data: bytes | None) -> None:
        """A command reply (QoS 1, not retained), echoing the request's correlation data."""
        props = Properties(PacketTypes.PUBLISH)
        if correlation_data is not None:
            props.CorrelationData = correlation_data
        self.client.publish(topic, json.dumps(payload).encode(), qos=1, properties=props)

    def publish_replayed(self, row: OutboxRow) -> None:
        """A delivered result sent again (`cmd/replay`), flagged in its payload and by the user property `replay`.

        Not tracked in the window: the row is already delivered, and a consumer that misses it again asks again."""
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("replay", "true")]
        self.client.publish(row.topic, as_replay(row.payload), qos=1, properties=props)
        self.stats.replayed += 1

    def _flush_buffered(self, client: mqtt.Client) -> None:
        with self._lock:
            retained = list(self._retained.items())
            events = list(self._events)
            self._events.clear()
        for topic, payload in retained:
            client.publish(topic, payload, qos=1, retain=True)
        for payload in events:
            client.publish(self.topics.events, payload, qos=1)

    # ----- drain thread ----------------------------------------------------------------------------------------
    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()
            self._shared.wake.wait(timeout=0.2)
            self._shared.wake.clear()
            try:
                self._settle_acks()
                self.outbox.prune()  # delivered results past the retention window
                self._report_outbox_alarm()
                if self.connected:
                    self._resend_rejected()
                    self._fill_window()
            except Exception as exc:  # keep draining: a disk hiccup must not end delivery for good
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("outbox drain failed; retrying", error=self.stats.last_error)
                self._stop.wait(1.0)
        self._settle_acks()

    def _settle_acks(self) -> None:
        delivered: list[int] = []
        while True:
            try:
                mid, failed, reason = self._shared.acks.get_nowait()
            except queue.Empty:
                break
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue  # status, event or reply
            if failed:
                self._reject(seq, reason)
            else:
                delivered.append(seq)
        if delivered:
            self.stats.acked += self.outbox.ack(delivered)
            if self.on_delivered is not None:
                self.on_delivered(delivered)

    def _report_outbox_alarm(self) -> None:
        """An `outbox_alarm` event for each time the alarm turned on/off or more results were refused."""
        for change in self.outbox.take_alarm_changes():
            fields = {"active": change.active, "refused": change.refused, "depth": change.depth}
            fields |= {"bytes": change.bytes, "max_bytes": self.outbox.max_bytes}
            if change.active:
                log.warning("outbox alarm", **fields)
            else:
                log.info("outbox alarm cleared", **fields)
            self.publish_event("outbox_alarm", **fields)

    def _reject(self, seq: int, reason: str) -> None:
        self.stats.rejected += 1
        self.stats.last_error = f"broker refused seq {seq}: {reason}"
        self._retry_at[seq] = time.monotonic() + REJECTED_RETRY_S
        log.error("broker refused result; will resend", seq=seq, reason=reason, rejected=self.stats.rejected)
        self.publish_event("publish_rejected", seq=seq, reason=reason)

    def _resend_rejected(self) -> None:
        now = time.monotonic()
        for seq in [s for s, at in self._retry_at.items() if at <= now]:
            del self._retry_at[seq]
            rows = self.outbox.pending(limit=1, after_seq=seq - 1)
            if rows and rows[0].seq == seq:
                self._publish_row(rows[0])

    def _fill_window(self) -> None:
        if self._waiting_for_resends():
            return
        room = self._window - len(self._inflight)
        if room <= 0:
            return
        for row in self.outbox.pending(limit=room, after_seq=self._handed_upto):
            self._publish_row(row)
            self._handed_upto = row.seq

    def _waiting_for_resends(self) -> bool:
        """True until every result that was in flight at the last (re)connect is settled.

        paho resends those only after our on_connect returned, so a row handed now could reach the broker before an
        older one: holding new rows for that one round trip keeps the broker's order equal to `seq` order."""
        if self._shared.reconnected.is_set():
            self._shared.reconnected.clear()
            self._resend_barrier = set(self._inflight)
        self._resend_barrier &= self._inflight.keys()
        return bool(self._resend_barrier)

    def _publish_row(self, row: OutboxRow) -> None:
        info = self.client.publish(row.topic, row.payload, qos=1)
        self._inflight[info.mid] = row.seq
        self.stats.published += 1
