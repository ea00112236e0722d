"""The assembled `edge-inspect` app: every command in its listing order, whichever package registers it."""

from __future__ import annotations

import re
import subprocess
import sys

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from agent.cli import app, build_app
from agent.cli.app import COMMAND_ORDER, MODEL_COMMAND_ORDER, put_in_order

TOP_LEVEL = ["run", "check-config", "detect", "demo", "evaluate", "finetune", "recalibrate", "calibrate", "data",
             "model", "queue", "export"]
MODEL = ["list", "add", "verify", "promote", "rollback", "set-base", "tiny", "train", "demo", "published", "convert"]


def listed(app_: typer.Typer, *group: str) -> list[str]:
    command = typer.main.get_command(app_)
    ctx = typer.Context(command)
    for name in group:
        assert isinstance(command, TyperGroup)
        command = command.get_command(ctx, name)  # type: ignore[assignment]
    assert isinstance(command, TyperGroup)
    return list(command.list_commands(ctx))


def test_help_lists_every_command_in_the_documented_order() -> None:
    assert listed(app) == TOP_LEVEL == list(COMMAND_ORDER)
    assert listed(app, "model") == MODEL == list(MODEL_COMMAND_ORDER)
    assert listed(app, "data") == ["validate", "convert", "split", "synth"]
    assert listed(app, "queue") == ["list", "show", "export", "import", "purge"]
    assert listed(app, "export") == ["onnx"]
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = re.findall(r"^│ ([a-z-]+) ", result.output, flags=re.MULTILINE)
    assert rows[-len(TOP_LEVEL):] == TOP_LEVEL


def test_a_second_app_is_built_afresh_without_registering_anything_twice() -> None:
    second = build_app()
    assert listed(second) == TOP_LEVEL and listed(second, "model") == MODEL
    assert listed(app, "model") == MODEL


def test_unlisted_commands_keep_their_registration_order_after_the_listed_ones() -> None:
    group = typer.Typer()
    for name in ("zeta", "model", "alpha", "run"):
        group.command(name)(lambda: None)
    put_in_order(group, COMMAND_ORDER)
    assert [info.name for info in group.registered_commands] == ["run", "model", "zeta", "alpha"]


def test_python_dash_m_agent_cli_runs_the_same_app() -> None:
    result = subprocess.run([sys.executable, "-m", "agent.cli", "model", "--help"], capture_output=True, text=True,
                            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage: python -m agent.cli model" in result.stdout
    assert all(f"│ {name} " in result.stdout for name in MODEL)
    assert "note:" not in result.stderr
