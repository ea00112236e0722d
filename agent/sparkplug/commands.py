"""NCMD/DCMD payloads: what a Sparkplug host asks of the edge node, or why the request is refused.

A host writes a metric by name: `Node Control/Rebirth` (Boolean true) on the node, `Command/Trigger` (String, the
part id, may be empty) on a camera. Everything else (not protobuf, a metric without a name, a wrong data type, an
unknown metric, a retained command, a trigger while `sparkplug.allow_commands` is off) raises `CommandRejected`
with a reason naming the bad value; the node logs it, counts it and goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from agent.sparkplug import proto
from agent.sparkplug.metrics import REBIRTH, TRIGGER

MAX_PART_ID = 128  # as cmd/trigger's part_id


class CommandRejected(ValueError):
    """A command the node will not carry out; the message says why."""


@dataclass(frozen=True)
class Rebirth:
    """Publish NBIRTH and every DBIRTH again."""


@dataclass(frozen=True)
class Trigger:
    """Inspect the next frame of `camera` as the part `part_id` (None: no part id)."""

    camera: str
    part_id: str | None


def parse_payload(raw: bytes) -> list[Any]:
    """The metrics of a command payload; CommandRejected when it is not a Sparkplug B payload."""
    try:
        payload = proto.Payload.FromString(raw)
    except DecodeError as exc:
        raise CommandRejected(f"payload of {len(raw)} bytes is not a Sparkplug B protobuf payload: {exc}") from None
    if not payload.metrics:
        raise CommandRejected("payload names no metric")
    return list(payload.metrics)


def node_commands(raw: bytes) -> list[Rebirth]:
    """An NCMD: only `Node Control/Rebirth` = true is accepted."""
    commands: list[Rebirth] = []
    for metric in parse_payload(raw):
        _check_name(metric, {REBIRTH})
        if metric.WhichOneof("value") != "boolean_value" or not metric.boolean_value:
            raise CommandRejected(f"{REBIRTH} must be written with the Boolean true, got {_shown(metric)}")
        commands.append(Rebirth())
    return commands


def device_commands(raw: bytes, camera: str, allowed: bool) -> list[Trigger]:
    """A DCMD for `camera`: `Command/Trigger` with a String part id, when `allowed` (sparkplug.allow_commands)."""
    metrics = parse_payload(raw)
    if not allowed:
        raise CommandRejected("DCMD refused: device commands are off (sparkplug.allow_commands: false); Sparkplug "
                              "commands are not signed")
    commands: list[Trigger] = []
    for metric in metrics:
        _check_name(metric, {TRIGGER})
        if metric.WhichOneof("value") != "string_value":
            raise CommandRejected(f"{TRIGGER} must be written with a String (the part id), got {_shown(metric)}")
        if len(metric.string_value) > MAX_PART_ID:
            raise CommandRejected(f"{TRIGGER}: part id of {len(metric.string_value)} characters, at most "
                                  f"{MAX_PART_ID}")
        commands.append(Trigger(camera, metric.string_value or None))
    return commands


def _check_name(metric: Any, known: set[str]) -> None:
    if not metric.HasField("name"):
        raise CommandRejected(f"metric without a name (alias {metric.alias}); this node declares no aliases")
    if metric.name not in known:
        raise CommandRejected(f"unknown metric {metric.name[:80]!r}; writable here: {sorted(known)}")


def _shown(metric: Any) -> str:
    kind = metric.WhichOneof("value")
    return "no value" if kind is None else f"{kind} {str(getattr(metric, kind))[:40]!r}"
