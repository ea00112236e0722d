"""The methods' arguments and answers, without asyncua: `Trigger(Camera, PartId[, Expect])` goes through the same
`Handshake.trigger` as MQTT's `cmd/trigger` (one trigger queue, one answer), `SelectJob(Job)` through the caller's
job switch. A malformed call is a `MethodProblem`: a Bad status code, the argument it concerns and a message."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agent.control.commands import CommandError, TriggerCommand

TriggerHandler = Callable[[TriggerCommand], dict[str, Any]]


@dataclass
class MethodProblem(Exception):
    """`status`: the OPC UA status code name; `argument`: index of the bad input argument (None: the call as a
    whole); `message`: what is wrong, for the log and the Message output."""

    status: str
    argument: int | None
    message: str


@dataclass(frozen=True)
class TriggerAnswer:
    status: str  # accepted, busy or overflow: as the MQTT reply's `status`
    position: int  # 1 = no part ahead; 0 when refused
    message: str  # why a refusal happened; '' when accepted


def trigger(handler: TriggerHandler, args: Sequence[Any]) -> TriggerAnswer:
    """Run one Trigger call: a refusal (busy/overflow) is an answer, a malformed call a MethodProblem."""
    command = trigger_command(args)
    try:
        reply = handler(command)
    except CommandError as exc:
        status = exc.fields.get("status")
        if status is None:  # unknown camera, free-run camera: a configuration problem, not worth a retry
            raise MethodProblem("BadInvalidArgument", 0, str(exc)) from None
        return TriggerAnswer(str(status), 0, str(exc))
    return TriggerAnswer(str(reply["status"]), int(reply["position"]), "")


def trigger_command(args: Sequence[Any]) -> TriggerCommand:
    """Camera and PartId (non-empty strings), optional Expect ('', 'pass' or 'fail') as the MQTT command."""
    if len(args) not in (2, 3):
        raise MethodProblem("BadArgumentsMissing" if len(args) < 2 else "BadTooManyArguments", None,
                            f"Trigger takes Camera, PartId and optionally Expect; got {len(args)} arguments")
    for index, name in enumerate(("Camera", "PartId", "Expect")[:len(args)]):
        if not isinstance(args[index], str):
            raise MethodProblem("BadTypeMismatch", index, f"{name} must be a String")
    camera, part_id, expect = args[0], args[1], args[2] if len(args) == 3 else ""
    if not camera:
        raise MethodProblem("BadInvalidArgument", 0, "Camera is empty")
    if not part_id:
        raise MethodProblem("BadInvalidArgument", 1, "PartId is empty: a triggered part needs an id")
    try:
        return TriggerCommand.model_validate({"camera": camera, "part_id": part_id, "expect": expect or None})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        argument = {"camera": 0, "part_id": 1, "expect": 2}.get(field)
        raise MethodProblem("BadInvalidArgument", argument, f"{field}: {error['msg']}") from None


def select_job(switch: Callable[[str], str], args: Sequence[Any]) -> str:
    """Run one SelectJob call: the job (a model store version) now served, or a MethodProblem."""
    if len(args) != 1 or not isinstance(args[0], str) or not args[0]:
        raise MethodProblem("BadInvalidArgument", 0 if args else None, "SelectJob takes one non-empty String: Job")
    try:
        return switch(args[0])
    except (ValueError, LookupError) as exc:
        raise MethodProblem("BadInvalidArgument", 0, str(exc)) from None
    except RuntimeError as exc:  # the store switched but the model did not load, or a switch is running
        raise MethodProblem("BadInvalidState", None, str(exc)) from None
