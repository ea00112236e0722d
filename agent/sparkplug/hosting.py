"""Starting the Sparkplug B edge node inside the daemon and feeding it.

The daemon calls `start_sparkplug` at start-up, `EdgeNode.wake` after each stored batch, `EdgeNode.camera_status`
on every camera status change and `EdgeNode.stop` at shutdown. A node that cannot be built (e.g. a TLS file that
cannot be read) is logged and the daemon inspects without it, like the OPC UA server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from agent import __version__
from agent.config import Settings
from agent.control.commands import CommandError, TriggerCommand
from agent.health.notify import Watchdog
from agent.publish.outbox import Outbox
from agent.sparkplug.metrics import NodeInfo
from agent.sparkplug.node import EdgeNode, SparkplugTopics, TriggerAnswer
from agent.statedir import StateDir

log = structlog.get_logger("agent.sparkplug")

LOOP_MAX_AGE_S = 30.0  # as the daemon's other loops: a sparkplug thread silent this long is reported dead


def start_sparkplug(settings: Settings, outbox: Outbox, trigger: Callable[[TriggerCommand], Any],
                    watchdog: Watchdog) -> EdgeNode | None:
    """The running edge node (its thread watched by `watchdog`), or None when `sparkplug.enabled` is false or it could
    not be built (logged)."""
    cfg = settings.sparkplug
    if not cfg.enabled:
        return None
    topics = SparkplugTopics(cfg.group_id, cfg.edge_node_id or settings.device_id)
    cameras = {c.name: c.mode for c in settings.cameras if c.enabled}
    try:
        node = EdgeNode(topics, cfg.broker(settings.mqtt), settings.sparkplug_client_id,
                        NodeInfo(__version__, settings.device_id), cameras, outbox,
                        StateDir(settings.state_dir).sparkplug, trigger_answer(trigger), cfg.allow_commands)
    except (OSError, ValueError) as exc:
        log.error("sparkplug edge node not started; the daemon inspects without it", error=str(exc))
        return None
    node.start()
    watchdog.register_probe("sparkplug", lambda: node.alive(LOOP_MAX_AGE_S))
    return node


def trigger_answer(trigger: Callable[[TriggerCommand], Any]) -> TriggerAnswer:
    """A DCMD trigger through the daemon's handshake (as cmd/trigger and OPC UA's Trigger), answered in one word:
    accepted, busy, overflow, or refused (e.g. a camera in free-run mode)."""

    def answer(camera: str, part_id: str | None) -> str:
        try:
            trigger(TriggerCommand(camera=camera, part_id=part_id))
        except CommandError as exc:
            log.info("sparkplug trigger refused", camera=camera, part_id=part_id, reason=str(exc))
            return str(exc.fields.get("status", "refused"))
        return "accepted"

    return answer
