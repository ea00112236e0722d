"""The daemon's side: no edge node unless enabled, one that cannot be built leaves the daemon inspecting, and a DCMD
trigger answered in the handshake's own word."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import MqttConfig, Settings, TlsConfig
from agent.config.sparkplug import SparkplugConfig
from agent.control.commands import CommandError, TriggerCommand
from agent.health.notify import Notifier, Watchdog
from agent.sparkplug.hosting import start_sparkplug, trigger_answer
from tests.agent.sparkplug.helpers import open_outbox


def never(_cmd: TriggerCommand) -> Any:
    raise AssertionError("no trigger expected")


def test_disabled_or_unbuildable_means_no_node_and_no_error(tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    assert start_sparkplug(Settings(state_dir=tmp_path), outbox, never, Watchdog(Notifier())) is None
    broken = MqttConfig(tls=TlsConfig(enabled=True, ca_file=tmp_path / "missing-ca.pem"))
    settings = Settings(state_dir=tmp_path, sparkplug=SparkplugConfig(enabled=True, mqtt=broken))
    assert start_sparkplug(settings, outbox, never, Watchdog(Notifier())) is None


def test_a_trigger_is_answered_accepted_busy_overflow_or_refused() -> None:
    seen: list[TriggerCommand] = []

    def handshake(cmd: TriggerCommand) -> dict[str, Any]:
        seen.append(cmd)
        if cmd.part_id == "busy":
            raise CommandError("busy: the camera is capturing", status="busy")
        if cmd.camera == "cam0":
            raise CommandError("camera: 'cam0' runs in 'free-run' mode, not 'trigger'")
        return {"status": "accepted"}

    answer = trigger_answer(handshake)
    assert [answer("gate", "P-1"), answer("gate", "busy"), answer("cam0", None)] == ["accepted", "busy", "refused"]
    assert [(c.camera, c.part_id) for c in seen] == [("gate", "P-1"), ("gate", "busy"), ("cam0", None)]
