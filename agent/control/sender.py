"""Sending a `cmd/{verb}` to a daemon: the other end of `agent.control.commands`.

`send_command` publishes at QoS 1 (never retained: the daemon ignores retained commands), signs the request with the
MQTT v5 user properties `ts`, `command_id` and `sig` when given the HMAC key (see `command_signature` and
docs/mqtt.md), attaches a response topic and correlation data when the caller wants the reply, and returns only
once the broker acknowledged it (PUBACK). The recalibration run's reload and the tests send commands with it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.control.commands import command_signature
from agent.publish.client import PublishRefused, publish_confirmed


class CommandNotSent(RuntimeError):
    """The broker did not acknowledge the command in time (or the client is not connected)."""


class CommandRefused(CommandNotSent):
    """The broker refused the command (PUBACK reason code >= 0x80, e.g. 0x87 Not authorized: its ACL does not let
    our MQTT user write that topic)."""


@dataclass(frozen=True)
class SentCommand:
    """What went out: the topic, and the command id when it was signed (None: unsigned)."""

    topic: str
    command_id: str | None

    @property
    def signed(self) -> bool:
        return self.command_id is not None


def command_properties(
    topic: str,
    payload: bytes,
    key: bytes | None = None,
    response_topic: str | None = None,
    correlation_data: bytes | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[Properties, str | None]:
    """PUBLISH properties for a command, and its command id when signed with `key`."""
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation_data is not None:
        props.CorrelationData = correlation_data
    if key is None:
        return props, None
    ts, command_id = f"{clock():.3f}", uuid.uuid4().hex
    props.UserProperty = [("ts", ts), ("command_id", command_id),
                          ("sig", command_signature(key, topic, ts, command_id, payload))]
    return props, command_id


def send_command(
    client: mqtt.Client,
    topic: str,
    payload: bytes,
    key: bytes | None = None,
    response_topic: str | None = None,
    correlation_data: bytes | None = None,
    timeout_s: float = 10.0,
) -> SentCommand:
    """Publish one command (QoS 1) and wait for its PUBACK; `CommandNotSent` when none came within `timeout_s`,
    `CommandRefused` when the broker refused it."""
    props, command_id = command_properties(topic, payload, key, response_topic, correlation_data)
    try:
        info = publish_confirmed(client, topic, payload, timeout_s, props)
    except PublishRefused as exc:
        raise CommandRefused(str(exc)) from exc
    except (RuntimeError, ValueError) as exc:  # not connected, or paho's queue is full
        raise CommandNotSent(f"{topic}: {exc}") from exc
    if not info.is_published():
        raise CommandNotSent(f"{topic}: the broker did not acknowledge the command within {timeout_s:g} s")
    return SentCommand(topic, command_id)
