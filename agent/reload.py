"""What a reload (`cmd/reload`, SIGHUP) may change in a running daemon, and what it must leave to a restart.

Live (`LIVE_SECTIONS`): the `model` section (base model, adapter from the config or the model store, thresholds,
size rules; every reload also re-reads the cameras' geometry files, agent/geometry.py, which are not config), the
`cameras` (added, removed, changed: `CameraChanges`; the daemon restarts a changed camera alone), `batch`, the
learning `queue` (samplers, quotas, budget, the `cmd/flag` memory), the `station` (restarted on its new host, port,
TLS or users when any of its keys changed) and the `pictures`. Everything else (MQTT, outbox, metrics, commands,
opcua, state_dir, device_id, log_level) was wired into sockets, files and threads at start-up: a reload keeps the
running values and names each changed key in `restart_required`, so the operator knows the file and the daemon
disagree until `systemctl restart`. Dropping the MQTT session to apply an `mqtt` key would lose the broker's queued
messages for us; that is a restart's job. With OPC UA on, its address space keeps the cameras it started with: a
camera change then also names `opcua.cameras`, and likewise `sparkplug.cameras` for the Sparkplug node's devices
(born at start-up). The `recalibration` section is read by `edge-inspect recalibrate` itself, never by the daemon,
so it is neither.

`scope` says what is re-read: `all` (the default, and SIGHUP) the config file and the model store, `model` only the
model store (what a recalibration run sends after a promotion), `config` only the config file (the detector is
loaded again only when a `model` key other than the thresholds and size rules changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from agent.config import CameraConfig, Settings

Scope = Literal["all", "model", "config"]
LIVE_SECTIONS = ("model", "cameras", "batch", "queue", "station", "pictures")
NOT_THE_DAEMONS = ("recalibration",)
# model keys that change only the decision, not the detector: applying them needs no model load
DECISION_KEYS = frozenset({"model.thresholds", "model.default_threshold", "model.uncertain_band", "model.size_rules"})
OPCUA_CAMERAS = "opcua.cameras"  # not a config key: the OPC UA address space's camera nodes
SPARKPLUG_CAMERAS = "sparkplug.cameras"  # not a config key: the Sparkplug node's devices (DBIRTH at start-up)


@dataclass(frozen=True)
class CameraChanges:
    """Cameras a reload adds, removes (by name) and restarts (same name, any other key changed)."""

    added: tuple[CameraConfig, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[CameraConfig, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.restarted)

    def describe(self) -> dict[str, list[str]]:
        """The camera names, as the reply and the `model_changed` event carry them."""
        return {"added": [c.name for c in self.added], "removed": list(self.removed),
                "restarted": [c.name for c in self.restarted]}


def camera_changes(old: Sequence[CameraConfig], new: Sequence[CameraConfig]) -> CameraChanges:
    before = {c.name: c for c in old}
    names = {c.name for c in new}
    return CameraChanges(added=tuple(c for c in new if c.name not in before),
                         removed=tuple(name for name in before if name not in names),
                         restarted=tuple(c for c in new if c.name in before and c != before[c.name]))


@dataclass(frozen=True)
class ReloadPlan:
    """The settings to run with after the reload, and what changed."""

    settings: Settings
    scope: Scope
    load_model: bool  # load the detector again (re-reading the model store)
    applied: list[str] = field(default_factory=list)  # changed keys that take effect now
    restart_required: list[str] = field(default_factory=list)  # changed keys that wait for a restart
    cameras: CameraChanges = field(default_factory=CameraChanges)

    def touches(self, section: str) -> bool:
        """Whether an applied key lies in `section` (e.g. `station`)."""
        return any(_section(key) == section for key in self.applied)

    def summary(self, model: str) -> dict[str, Any]:
        """The reply and `model_changed` event fields that say what this reload did."""
        return {"model": model, "scope": self.scope, "applied": self.applied,
                "restart_required": self.restart_required, "cameras": self.cameras.describe()}


def changed_keys(old: BaseModel, new: BaseModel, prefix: str = "") -> list[str]:
    """Dotted config keys whose values differ (sections are compared key by key, lists as a whole)."""
    keys: list[str] = []
    for name in type(old).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if isinstance(before, BaseModel) and isinstance(after, BaseModel):
            keys += changed_keys(before, after, f"{prefix}{name}.")
        elif before != after:
            keys.append(f"{prefix}{name}")
    return keys


def plan_reload(running: Settings, loaded: Settings | None, scope: Scope) -> ReloadPlan:
    """Keep the running settings except the live sections of `loaded` (the config file re-read; None: not read)."""
    if loaded is None:
        return ReloadPlan(running, scope, load_model=scope != "config")
    changed = _changed(running, loaded)
    applied = [key for key in changed if _section(key) in LIVE_SECTIONS]
    restart = [key for key in changed if _section(key) not in (*LIVE_SECTIONS, *NOT_THE_DAEMONS)]
    if running.opcua.enabled and _modes(running) != _modes(loaded):
        restart.append(OPCUA_CAMERAS)
    if running.sparkplug.enabled and _modes(running) != _modes(loaded):
        restart.append(SPARKPLUG_CAMERAS)
    settings = running.model_copy(update={name: getattr(loaded, name) for name in LIVE_SECTIONS})
    load_model = scope == "all" or any(_section(k) == "model" and k not in DECISION_KEYS for k in applied)
    return ReloadPlan(settings, scope, load_model, applied, restart, camera_changes(running.cameras, loaded.cameras))


def _changed(running: Settings, loaded: Settings) -> list[str]:
    """`changed_keys`, plus `station.users` when only the credential file's users changed (not a config field)."""
    keys = changed_keys(running, loaded)
    if "station.users" not in keys and running.station.accounts() != loaded.station.accounts():
        keys.append("station.users")
    return keys


def _modes(settings: Settings) -> dict[str, str]:
    return {c.name: c.mode for c in settings.cameras}


def _section(key: str) -> str:
    return key.split(".", 1)[0]
