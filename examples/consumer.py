"""Reference consumer of edge-inspect results: every result exactly once, in `seq` order, per device.

What a consumer has to do (docs/mqtt.md, "Consuming results"):

1. Keep a persistent MQTT v5 session (fixed client id, clean_start false, session expiry) and subscribe at QoS 1.
2. Deduplicate: delivery is at least once. A result is identified by its `msg_id`; because `seq` is per device and
   gap-free, anything below the next expected seq has been delivered already.
3. Put results back in `seq` order: after a broker restart a result can arrive after a later one.
4. Ask for what is missing: a hole in `seq` that stays open for `gap_grace_s`, or silence while the daemon has newer
   results, is answered with a signed `cmd/replay {from_seq, to_seq}`; the daemon sends the kept results again
   (flagged `"replay": true`). Seqs the reply lists as `pruned` are gone for good: they are reported and skipped.

Run: python examples/consumer.py --host broker --device line1-box1 [--hmac-key-file key] [--state pos.json]
It prints one JSON line per result, in order. `ReplayConsumer` is what tests/agent/publish/test_mqtt.py drives.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.control.sender import CommandNotSent, send_command

MAX_REPLAY = 1000  # the daemon's limit per replay (agent/control/commands.py:MAX_REPLAY_SEQS)
Deliver = Callable[[dict[str, Any]], None]


class InOrder:
    """One device's results: drops duplicates, holds early ones, releases them in seq order (no MQTT here)."""

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq  # the first seq not yet delivered
        self.held: dict[int, dict[str, Any]] = {}  # seq -> result that arrived early
        self.hole_since: float | None = None  # when the current hole was first seen

    def offer(self, result: dict[str, Any], now: float) -> list[dict[str, Any]]:
        """The results that can be delivered now, in order (empty for a duplicate or an early one)."""
        seq = int(result["seq"])
        held = self.held.get(seq)
        if seq < self.next_seq or (held is not None and held["msg_id"] == result["msg_id"]):
            return []  # a duplicate: delivered or held already
        self.held[seq] = result
        return self._release(now)

    def skip(self, seqs: list[int], now: float) -> list[dict[str, Any]]:
        """Give up on `seqs` (the daemon no longer has them); returns what that releases."""
        for seq in seqs:
            if seq == self.next_seq:
                self.next_seq += 1
        return self._release(now)

    def _release(self, now: float) -> list[dict[str, Any]]:
        ready = []
        while self.next_seq in self.held:
            ready.append(self.held.pop(self.next_seq))
            self.next_seq += 1
        self.hole_since = (self.hole_since or now) if self.held else None
        return ready

    def hole(self) -> tuple[int, int] | None:
        """The missing range before the first held result, or None when nothing is held."""
        if not self.held:
            return None
        return self.next_seq, min(min(self.held) - 1, self.next_seq + MAX_REPLAY - 1)


class ReplayConsumer:
    """Subscribes to one device's results and calls `deliver` once per result, in seq order, asking for replays."""

    def __init__(self, host: str, port: int, device: str, deliver: Deliver, *, client_id: str,
                 prefix: str = "edge-inspect", next_seq: int = 1, hmac_key: bytes | None = None,
                 gap_grace_s: float = 1.0, idle_probe_s: float = 30.0, on_lost: Deliver | None = None) -> None:
        self.base = f"{prefix}/{device}"
        self.reply_topic = f"hmi/replies/{client_id}"
        self.deliver, self.on_lost = deliver, on_lost
        self.hmac_key, self.gap_grace_s, self.idle_probe_s = hmac_key, gap_grace_s, idle_probe_s
        self.order = InOrder(next_seq)
        self.replies: list[dict[str, Any]] = []
        self.replays_asked = 0
        self.subscribed = threading.Event()  # set on every SUBACK (tests wait on it)
        self._lock = threading.Lock()
        self._last_activity = time.monotonic()
        self._asked_at = 0.0
        self._stop = threading.Event()
        self.client = self._connect(host, port, client_id)
        self._checker = threading.Thread(target=self._check_loop, name="replay-checker", daemon=True)
        self._checker.start()

    def _connect(self, host: str, port: int, client_id: str) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.reconnect_delay_set(1, 2)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = lambda *_args: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 24 * 3600  # the broker queues our results while we are away
        client.connect_async(host, port, keepalive=10, clean_start=False, properties=props)
        client.loop_start()
        return client

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        # subscribe on every connect: a broker that lost its state (crash before persisting) forgot our session
        client.subscribe([(f"{self.base}/cameras/+/result", 1), (self.reply_topic, 1)])

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return  # not ours; an exception here would stop paho's network loop
        with self._lock:
            self._last_activity = time.monotonic()
            if message.topic == self.reply_topic:
                ready = self._settle_reply(payload)
            else:
                ready = self.order.offer(payload, time.monotonic())
        for result in ready:
            self.deliver(result)

    def _settle_reply(self, reply: dict[str, Any]) -> list[dict[str, Any]]:
        """A replay reply: pruned seqs are lost for good; skip them so the results after them flow again."""
        self.replies.append(reply)
        lost = [seq for first, last in reply.get("pruned", []) for seq in range(first, last + 1)]
        for seq in lost:
            if self.on_lost is not None and seq >= self.order.next_seq:
                self.on_lost({"seq": seq, "device": self.base})
        return self.order.skip(lost, time.monotonic())

    # ----- asking for replays (own thread: send_command waits for the broker's PUBACK) ----------------------------
    def _check_loop(self) -> None:
        while not self._stop.wait(0.2):
            wanted = self._wanted_range(time.monotonic())
            if wanted is not None:
                self._ask(*wanted)

    def _wanted_range(self, now: float) -> tuple[int, int] | None:
        """A hole older than the grace time, or (after silence) a probe past the newest result delivered."""
        with self._lock:
            if now - self._asked_at < max(self.gap_grace_s, 1.0):
                return None  # give the last request time to be answered
            hole = self.order.hole()
            since = self.order.hole_since
            if hole is not None and since is not None and now - since >= self.gap_grace_s:
                return hole
            if hole is None and now - self._last_activity >= self.idle_probe_s:
                # a loss at the tail shows no hole until the next result; the reply's last_seq tells
                return self.order.next_seq, self.order.next_seq + MAX_REPLAY - 1
        return None

    def _ask(self, from_seq: int, to_seq: int) -> None:
        self._asked_at = self._last_activity = time.monotonic()
        body = json.dumps({"from_seq": from_seq, "to_seq": to_seq}).encode()
        try:
            send_command(self.client, f"{self.base}/cmd/replay", body, key=self.hmac_key,
                         response_topic=self.reply_topic, correlation_data=f"{from_seq}-{to_seq}".encode())
            self.replays_asked += 1
        except CommandNotSent:
            pass  # the broker is away; the next check asks again

    def close(self) -> None:
        self._stop.set()
        self._checker.join(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--device", required=True)
    parser.add_argument("--prefix", default="edge-inspect")
    parser.add_argument("--client-id", default="results-consumer")
    parser.add_argument("--hmac-key-file", type=Path, help="commands.hmac_key of the daemon, to sign cmd/replay")
    parser.add_argument("--state", type=Path, help="JSON file keeping the next expected seq across restarts")
    args = parser.parse_args()
    state = json.loads(args.state.read_text()) if args.state and args.state.exists() else {"next_seq": 1}

    def deliver(result: dict[str, Any]) -> None:
        print(json.dumps(result), flush=True)
        if args.state:
            args.state.write_text(json.dumps({"next_seq": result["seq"] + 1}))

    key = args.hmac_key_file.read_bytes().strip() if args.hmac_key_file else None
    consumer = ReplayConsumer(args.host, args.port, args.device, deliver, client_id=args.client_id,
                              prefix=args.prefix, next_seq=int(state["next_seq"]), hmac_key=key,
                              on_lost=lambda lost: print(json.dumps({"lost": lost}), flush=True))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        consumer.close()


if __name__ == "__main__":
    main()
