"""`edge-inspect model list|promote|rollback` against a store the test fills."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.store.model_store import ModelStore
from tests.agent.store.helpers import add, new_store


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return new_store(tmp_path)


def test_cli_list_promote_rollback(store: ModelStore, tmp_path: Path) -> None:
    v1, v2 = add(store, tmp_path, "a", metrics={"map": 0.25}), add(store, tmp_path, "b", 2.0)
    runner = CliRunner()
    state = ["--state-dir", str(store.root.parent)]

    assert runner.invoke(app, ["model", "promote", v1, *state]).exit_code == 0
    result = runner.invoke(app, ["model", "promote", v2, *state])
    assert result.exit_code == 0, result.output
    assert "current: v0002, previous: v0001" in result.output

    listing = runner.invoke(app, ["model", "list", *state])
    assert listing.exit_code == 0
    lines = {line.split()[0]: line for line in listing.output.splitlines() if line.startswith("v")}
    assert "previous" in lines[v1] and "map=0.250" in lines[v1]
    assert "current" in lines[v2]

    rolled = runner.invoke(app, ["model", "rollback", *state])
    assert rolled.exit_code == 0 and "current: v0001, previous: v0002" in rolled.output
    assert json.loads(runner.invoke(app, ["model", "list", "--json", *state]).output)["adapters"][0]["current"]


def test_cli_reports_store_errors_with_exit_code_1(store: ModelStore, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["model", "rollback", "--state-dir", str(store.root.parent)])
    assert result.exit_code == 1
    assert "nothing to roll back" in result.output


def test_cli_set_base_add_verify_through_the_commands(tmp_path: Path) -> None:
    from tests.agent.store.helpers import make_adapter, make_base

    runner = CliRunner()
    state = ["--state-dir", str(tmp_path / "state")]
    base = runner.invoke(app, ["model", "set-base", str(make_base(tmp_path / "base")), *state])
    assert base.exit_code == 0 and base.output.startswith(f"base model {tmp_path / 'base'} recorded as ")
    added = runner.invoke(app, ["model", "add", str(make_adapter(tmp_path / "a")), "--promote", *state])
    assert added.exit_code == 0 and added.output == f"stored {tmp_path / 'a'} as v0001 (now current)\n"
    verified = runner.invoke(app, ["model", "verify", "v0001", *state])
    assert verified.exit_code == 0 and verified.output == "v0001 ok: 1 weights file(s) match their sha256\n"
    again = runner.invoke(app, ["model", "promote", "v0001", *state])
    assert again.exit_code == 0 and again.output == "v0001 is already current; nothing changed\n"


def test_cli_needs_a_state_dir_or_a_valid_config(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["model", "list"])
    assert result.exit_code == 2 and result.stderr == "error: give --state-dir DIR or --config FILE\n"
    bad = tmp_path / "config.yaml"
    bad.write_text("mqtt: {port: 0}\n")
    result = runner.invoke(app, ["model", "list", "--config", str(bad)])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: invalid config {bad}: ")


def test_cli_list_of_an_empty_store_says_the_base_serves_alone(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["model", "list", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0
    assert result.output == "base: none recorded\nno adapters stored (the base model serves alone)\n"
