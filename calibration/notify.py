"""How a recalibration run talks to the line: progress events, and the `cmd/reload` that makes the daemon serve a
promoted adapter. Both use the daemon's own MQTT client factory, event builder and command sender (agent/), so the
run connects with the daemon's credentials and TLS, and its events look exactly like the daemon's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import structlog

from agent.config import Settings
from agent.control.sender import CommandNotSent, CommandRefused, send_command
from agent.publish.client import (
    MqttUnavailable,
    PublishRefused,
    close_client,
    connect_and_wait,
    create_client,
    publish_confirmed,
)
from agent.publish.events import encode_event
from agent.publish.topics import Topics
from calibration.report import RunError

log = structlog.get_logger("calibration.run")
EventSink = Callable[..., None]
RELOAD_PAYLOAD = {"scope": "model"}  # only the model store changed: the daemon need not re-read its config file
PUBACK_TIMEOUT_S = 5.0


def connect(settings: Settings, purpose: str) -> mqtt.Client:
    """A connected client with the daemon's credentials, its client id suffixed by `purpose`."""
    client = create_client(settings.mqtt, f"{settings.client_id}-{purpose}")
    return connect_and_wait(client, settings.mqtt)


class Events:
    """Progress to the log and, when a broker answers, to `{prefix}/{device}/events` (same shape as the daemon's)."""

    def __init__(self, settings: Settings, mqtt_enabled: bool) -> None:
        self.settings = settings
        self.topic = Topics(settings.base_topic).events
        self.client: mqtt.Client | None = None
        if mqtt_enabled:
            try:
                self.client = connect(settings, "recalibrate")
            except MqttUnavailable as exc:
                log.warning("no MQTT broker; progress goes to the log only", error=str(exc))

    def __call__(self, kind: str, **fields: Any) -> None:
        log.info(kind.replace("_", " "), **fields)
        if self.client is None:
            return
        try:
            publish_confirmed(self.client, self.topic, encode_event(kind, self.settings.device_id, **fields),
                              PUBACK_TIMEOUT_S)
        except PublishRefused as exc:  # a broker ACL that does not fit: say so, the line never sees the events
            log.warning("event refused by the broker", kind=kind, error=str(exc),
                        user=self.settings.mqtt.username)
        except (RuntimeError, ValueError) as exc:  # progress is best effort: the log has it either way
            log.debug("event not confirmed", kind=kind, error=str(exc))

    def close(self) -> None:
        if self.client is not None:
            close_client(self.client)


def reload_daemon(settings: Settings) -> dict[str, Any]:
    """Publish `cmd/reload` with scope "model" (signed when a key is configured); returns what was sent."""
    topic = Topics(settings.base_topic).command("reload")
    key = settings.commands.hmac_key
    try:
        client = connect(settings, "recalibrate-reload")
    except MqttUnavailable as exc:
        raise RunError(f"{exc}; cmd/reload not sent") from exc
    try:
        sent = send_command(client, topic, json.dumps(RELOAD_PAYLOAD).encode(),
                            key.get_secret_value().encode() if key is not None else None)
    except CommandRefused as exc:  # reported in the notify step's warning and the run's reason
        user = settings.mqtt.username or "(anonymous)"
        raise RunError(f"cmd/reload refused by the broker for MQTT user {user}: {exc}") from exc
    except CommandNotSent as exc:
        raise RunError(f"cmd/reload not acknowledged by the broker: {exc}") from exc
    finally:
        close_client(client)
    return {"topic": sent.topic, "signed": sent.signed}
