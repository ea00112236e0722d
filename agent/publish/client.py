"""The one way to build and connect a paho-mqtt 2.x client (MQTT v5) from the `mqtt` section of the config.

The daemon's publisher, the recalibration run, the demo's dashboard and the test helpers all build their clients
here, so the client id, credentials, TLS (CA, client certificate and key), keepalive and will are set the same way
everywhere: a box whose broker demands TLS client certificates accepts every one of our clients or none.
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig


class MqttUnavailable(ConnectionError):
    """The broker could not be reached or did not accept us in time; the message names host and port."""


class PublishRefused(RuntimeError):
    """The broker answered PUBACK with a failure reason code (>= 0x80), e.g. 0x87 Not authorized by its ACL."""


@dataclass(frozen=True)
class Will:
    """The message the broker publishes for us when our connection dies without a goodbye."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def negotiated_keepalive(keepalive_s: int) -> int:
    """The keepalive we ask the broker for: half the configured one (rounded up).

    paho notices a dead link only after two silent periods (one to send PINGREQ, one to give up on PINGRESP), so
    with half the configured value our side detects a blackholed link within 1.5 x `mqtt.keepalive` (measured in
    tests/faults/test_broker_faults.py), and the broker publishes our will even sooner (1.5 x the negotiated value).
    """
    return max(1, math.ceil(keepalive_s / 2))


def create_client(cfg: MqttConfig, client_id: str, will: Will | None = None) -> mqtt.Client:
    """An MQTT v5 client with credentials, TLS, reconnect backoff and `will` set; not connected yet."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    # paho counts reconnect delays in whole seconds
    client.reconnect_delay_set(cast(int, max(1, math.ceil(cfg.reconnect_min_s))), cast(int, cfg.reconnect_max_s))
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password is not None else None)
    if cfg.tls.enabled:
        configure_tls(client, cfg)
    return client


def configure_tls(client: mqtt.Client, cfg: MqttConfig) -> None:
    """Verify the broker against `tls.ca_file` (system CAs when unset); present a client certificate when given."""
    tls = cfg.tls
    client.tls_set(
        ca_certs=str(tls.ca_file) if tls.ca_file else None,
        certfile=str(tls.cert_file) if tls.cert_file else None,
        keyfile=str(tls.key_file) if tls.key_file else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )
    client.tls_insecure_set(tls.insecure)


def connect_in_background(client: mqtt.Client, cfg: MqttConfig, session_expiry_s: int | None = None,
                          fresh_sessions: bool = False) -> None:
    """Connect asynchronously and start the network loop; paho retries until the broker answers.

    With `session_expiry_s` the session is persistent (clean_start False): the broker keeps our subscriptions and
    unacknowledged QoS 1 messages across a reconnect, which the daemon's at-least-once delivery relies on.
    With `fresh_sessions` every connect, reconnects included, starts a new session (clean_start True, no expiry), as
    Sparkplug B requires of an edge node.
    """
    props, clean_start = None, True if fresh_sessions else mqtt.MQTT_CLEAN_START_FIRST_ONLY
    if session_expiry_s is not None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        clean_start = False
    client.connect_async(cfg.host, cfg.port, keepalive=negotiated_keepalive(cfg.keepalive), clean_start=clean_start,
                         properties=props)
    client.loop_start()


def connect_and_wait(client: mqtt.Client, cfg: MqttConfig, timeout_s: float = 5.0) -> mqtt.Client:
    """Connect now and start the network loop (for short-lived tools); `MqttUnavailable` when that fails."""
    where = f"{cfg.host}:{cfg.port}"
    try:
        client.connect(cfg.host, cfg.port, keepalive=negotiated_keepalive(cfg.keepalive))
    except OSError as exc:  # refused, unreachable, DNS, TLS handshake
        raise MqttUnavailable(f"cannot reach the MQTT broker {where}: {exc}") from exc
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not client.is_connected():  # e.g. bad credentials: CONNACK with a failure reason code
        close_client(client)
        raise MqttUnavailable(f"the MQTT broker {where} did not accept the connection within {timeout_s:g} s")
    return client


def publish_confirmed(client: mqtt.Client, topic: str, payload: bytes, timeout_s: float,
                      properties: Properties | None = None) -> mqtt.MQTTMessageInfo:
    """Publish at QoS 1 (not retained) and wait for the PUBACK; `PublishRefused` when the broker refused it.

    paho marks a message published on any PUBACK, refusals included, so the reason code is caught on the way
    (the client's own `on_publish`, if any, still runs). RuntimeError/ValueError as paho's `wait_for_publish`.
    """
    reasons: dict[int, ReasonCode] = {}
    previous = cast("Callable[..., None] | None", client.on_publish)  # a VERSION2 callback: we build VERSION2 clients

    def record(c: mqtt.Client, userdata: object, mid: int, reason: ReasonCode, props: Properties) -> None:
        reasons[mid] = reason
        if previous is not None:
            previous(c, userdata, mid, reason, props)

    client.on_publish = record
    try:
        info = client.publish(topic, payload, qos=1, retain=False, properties=properties)
        info.wait_for_publish(timeout=timeout_s)
    finally:
        client.on_publish = previous
    reason = reasons.get(info.mid)
    if reason is not None and reason.is_failure:
        raise PublishRefused(f"the broker refused the publish to {topic}: {reason} (reason code 0x{reason.value:02X})")
    return info


def close_client(client: mqtt.Client) -> None:
    """Disconnect cleanly (no will) and stop the network loop."""
    client.disconnect()
    client.loop_stop()
