"""The daemon's own answers to `cmd/{verb}`: the command router (agent/control/commands.py routes, checks
signatures and replies) and the handlers for reload, status and recalibrate; trigger, replay and flag are answered by
the handshake, the outbox's replay and the flag desk. Mixed into `agent/daemon.py:Daemon`.
"""

from __future__ import annotations

from typing import Any

from agent import __version__
from agent.cameras import CameraSet
from agent.config import Settings
from agent.control.commands import (
    CommandError,
    CommandRouter,
    RecalibrateCommand,
    ReloadCommand,
    authenticator_from_settings,
)
from agent.control.replay import replay_results
from agent.detector.base import Detector, DetectorError
from agent.flags import FlagDesk
from agent.handshake import Handshake
from agent.learn.queue import LearningQueue
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox
from agent.reload import Scope
from agent.runs import write_recalibration_request
from agent.statedir import StateDir
from agent.station.link import StationRefused
from agent.store.files import StoreError


class DaemonCommands:
    """The command side of the daemon; the attributes are the daemon's (set by `Daemon.__init__`/`start`)."""

    settings: Settings
    detector: Detector
    publisher: MqttPublisher
    outbox: Outbox
    queue: LearningQueue
    workers: CameraSet
    handshake: Handshake
    flags: FlagDesk

    def reload(self, scope: Scope = "all") -> dict[str, Any]:
        raise NotImplementedError  # the daemon's (agent/daemon.py:Daemon.reload)

    def _build_router(self) -> CommandRouter:
        c = self.settings.commands
        key = c.hmac_key.get_secret_value().encode() if c.hmac_key is not None else None
        router = CommandRouter(self.publisher.reply, self.publisher.topics.default_reply,
                               authenticator_from_settings(c.require_signature, key, c.max_skew_s))
        router.register("trigger", self.handshake.trigger)
        router.register("reload", self.cmd_reload)
        router.register("status", self.cmd_status)
        router.register("recalibrate", self.cmd_recalibrate)
        router.register("replay", lambda cmd: replay_results(self.outbox, self.publisher.publish_replayed, cmd))
        router.register("flag", self.flags.flag)
        return router

    def cmd_reload(self, cmd: ReloadCommand) -> dict[str, Any]:
        try:
            return self.reload(cmd.scope)
        except (DetectorError, StoreError, StationRefused, ValueError, OSError) as exc:
            raise CommandError(f"reload failed, the running config stays and model {self.detector.version} keeps "
                               f"serving: {exc}") from exc

    def cmd_status(self, _cmd: Any) -> dict[str, Any]:
        return {
            "state": "online", "version": __version__, "model": self.detector.version,
            "cameras": {n: {"status": w.status, **w.counters.snapshot()} for n, w in self.workers.items()},
            "outbox_depth": self.outbox.depth(), "queue_depth": self.queue.depth(),
        }

    def cmd_recalibrate(self, cmd: RecalibrateCommand) -> dict[str, Any]:
        """Leave a request file for the recalibration unit (systemd .path) and announce it."""
        path = write_recalibration_request(StateDir(self.settings.state_dir).recalibrate_request, cmd.reason, "mqtt")
        self.publisher.publish_event("recalibration_requested", reason=cmd.reason)
        return {"queued": True, "request": str(path)}
