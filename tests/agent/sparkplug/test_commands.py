"""NCMD/DCMD parsing: what is carried out, and a refusal that names the bad value for everything else."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.sparkplug import proto
from agent.sparkplug.commands import CommandRejected, Rebirth, Trigger, device_commands, node_commands


def command(**metric: object) -> bytes:
    payload = proto.Payload(timestamp=1)
    if metric:
        payload.metrics.add(**metric)
    return bytes(payload.SerializeToString())


def test_rebirth_and_trigger_are_understood() -> None:
    assert node_commands(command(name="Node Control/Rebirth", datatype=11, boolean_value=True)) == [Rebirth()]
    raw = command(name="Command/Trigger", datatype=12, string_value="P-1")
    assert device_commands(raw, "gate", allowed=True) == [Trigger("gate", "P-1")]
    empty = command(name="Command/Trigger", datatype=12, string_value="")
    assert device_commands(empty, "gate", allowed=True) == [Trigger("gate", None)]


@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xff\xff", "not a Sparkplug B protobuf payload"),
    (command(), "names no metric"),
    (command(alias=3, datatype=11, boolean_value=True), "without a name (alias 3)"),
    (command(name="Node Control/Reboot", datatype=11, boolean_value=True), "unknown metric 'Node Control/Reboot'"),
    (command(name="Node Control/Rebirth", datatype=11, boolean_value=False), "boolean_value 'False'"),
    (command(name="Node Control/Rebirth", datatype=12, string_value="yes"), "string_value 'yes'"),
])
def test_bad_node_commands_are_refused_naming_why(raw: bytes, reason: str) -> None:
    with pytest.raises(CommandRejected, match=re.escape(reason)):
        node_commands(raw)


def test_device_commands_need_allow_commands_and_a_string_part_id() -> None:
    raw = command(name="Command/Trigger", datatype=12, string_value="P-1")
    with pytest.raises(CommandRejected, match="allow_commands: false"):
        device_commands(raw, "gate", allowed=False)
    with pytest.raises(CommandRejected, match="with a String"):
        device_commands(command(name="Command/Trigger", datatype=11, boolean_value=True), "gate", allowed=True)
    with pytest.raises(CommandRejected, match="129 characters"):
        device_commands(command(name="Command/Trigger", datatype=12, string_value="x" * 129), "gate", allowed=True)


@given(st.binary(max_size=64), st.booleans())
def test_any_bytes_are_carried_out_or_refused_never_anything_else(raw: bytes, allowed: bool) -> None:
    for parse in (node_commands, lambda r: device_commands(r, "gate", allowed)):
        with contextlib.suppress(CommandRejected):  # anything else fails the test
            parse(raw)
