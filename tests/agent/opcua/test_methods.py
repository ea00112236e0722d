"""Trigger and SelectJob arguments and answers, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from agent.control.commands import CommandError, TriggerCommand
from agent.opcua.methods import MethodProblem, TriggerAnswer, select_job, trigger


def accepting(cmd: TriggerCommand) -> dict[str, Any]:
    return {"status": "accepted", "camera": cmd.camera, "part_id": cmd.part_id, "position": 2, "capacity": 4}


def test_an_accepted_trigger_carries_its_position() -> None:
    assert trigger(accepting, ["gate", "P-1"]) == TriggerAnswer("accepted", 2, "")


def test_a_refusal_is_an_answer_and_a_configuration_problem_a_bad_call() -> None:
    def overflowing(cmd: TriggerCommand) -> dict[str, Any]:
        raise CommandError("overflow: 4 parts in flight", status="overflow")

    def unknown(cmd: TriggerCommand) -> dict[str, Any]:
        raise CommandError("camera: unknown camera 'x'")

    assert trigger(overflowing, ["gate", "P-1"]) == TriggerAnswer("overflow", 0, "overflow: 4 parts in flight")
    with pytest.raises(MethodProblem) as bad:
        trigger(unknown, ["x", "P-1"])
    assert (bad.value.status, bad.value.argument) == ("BadInvalidArgument", 0)


@pytest.mark.parametrize(("args", "status", "argument"), [
    ([], "BadArgumentsMissing", None),
    (["gate", "P", "pass", "extra"], "BadTooManyArguments", None),
    (["gate", 7], "BadTypeMismatch", 1),
    (["", "P-1"], "BadInvalidArgument", 0),
    (["gate", ""], "BadInvalidArgument", 1),
    (["gate", "P" * 129], "BadInvalidArgument", 1),
    (["gate", "P-1", "good"], "BadInvalidArgument", 2),
])
def test_malformed_trigger_arguments_name_the_argument(args: list[Any], status: str, argument: int | None) -> None:
    with pytest.raises(MethodProblem) as bad:
        trigger(accepting, args)
    assert (bad.value.status, bad.value.argument) == (status, argument)


def test_select_job_reports_the_served_model_or_why_not() -> None:
    def switch(job: str) -> str:
        if job == "v0009":
            raise LookupError("Job: no model version 'v0009' in the store")
        if job == "v0002":
            raise RuntimeError("the daemon could not load v0002")
        return f"tiny+{job}"

    assert select_job(switch, ["v0001"]) == "tiny+v0001"
    for args, status in ((["v0009"], "BadInvalidArgument"), (["v0002"], "BadInvalidState"),
                         ([""], "BadInvalidArgument")):
        with pytest.raises(MethodProblem) as bad:
            select_job(switch, args)
        assert bad.value.status == status
