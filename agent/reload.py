"""What a reload (`cmd/reload`, SIGHUP) may change in a running daemon, and what it must leave to a restart.

Only the `model` section changes live: the base model, the adapter (config or model store), the thresholds and the
size rules; every reload also re-reads the cameras' geometry files (agent/geometry.py), which are not config.
Everything else (cameras, MQTT, batching, outbox, queue, metrics, commands, state_dir, device_id, log_level) was
wired into threads, sockets and files at start-up; a reload keeps the running values and names each changed key in
`restart_required`, so the operator knows the file and the daemon disagree until `systemctl restart`. The
`recalibration` section is read by `edge-inspect recalibrate` itself, never by the daemon, so it is neither.

`scope` says what is re-read: `all` (the default, and SIGHUP) the config file and the model store, `model` only the
model store (what a recalibration run sends after a promotion), `config` only the config file (the detector is
loaded again only when a `model` key other than the thresholds and size rules changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from agent.config import Settings

Scope = Literal["all", "model", "config"]
LIVE_SECTIONS = ("model",)
NOT_THE_DAEMONS = ("recalibration",)
# model keys that change only the decision, not the detector: applying them needs no model load
DECISION_KEYS = frozenset({"model.thresholds", "model.default_threshold", "model.uncertain_band", "model.size_rules"})


@dataclass(frozen=True)
class ReloadPlan:
    """The settings to run with after the reload, and what changed."""

    settings: Settings
    scope: Scope
    load_model: bool  # load the detector again (re-reading the model store)
    applied: list[str] = field(default_factory=list)  # changed keys that take effect now
    restart_required: list[str] = field(default_factory=list)  # changed keys that wait for a restart

    def summary(self, model: str) -> dict[str, Any]:
        """The reply and `model_changed` event fields that say what this reload did."""
        return {"model": model, "scope": self.scope, "applied": self.applied,
                "restart_required": self.restart_required}


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
    changed = changed_keys(running, loaded)
    applied = [key for key in changed if _section(key) in LIVE_SECTIONS]
    restart = [key for key in changed if _section(key) not in (*LIVE_SECTIONS, *NOT_THE_DAEMONS)]
    settings = running.model_copy(update={name: getattr(loaded, name) for name in LIVE_SECTIONS})
    load_model = scope == "all" or any(key not in DECISION_KEYS for key in applied)
    return ReloadPlan(settings, scope, load_model, applied, restart)


def _section(key: str) -> str:
    return key.split(".", 1)[0]
