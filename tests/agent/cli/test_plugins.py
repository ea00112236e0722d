"""Commands from finetune and calibration arrive through entry points; a plugin that fails to import only loses its
own commands, with a one-line note on stderr."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint

import pytest
import typer

import agent.cli.plugins as plugins
from agent.cli import build_app
from tests.agent.cli.test_app import MODEL, TOP_LEVEL, listed

FINETUNE_COMMANDS = {"evaluate", "finetune", "data", "export"}


@dataclass(frozen=True)
class UnimportablePlugin:
    """Stands in for an entry point whose module imports a package this box lacks."""

    name: str
    reason: str

    def load(self) -> object:
        raise ImportError(self.reason)


def app_with_failing_plugin(monkeypatch: pytest.MonkeyPatch, failing: str, reason: str) -> typer.Typer:
    """An app built while the entry point `failing` cannot be imported (the others load as installed)."""
    monkeypatch.setattr(plugins, "_unavailable", {})  # the loader's record of failures, restored after the test
    installed = plugins.entry_points(group=plugins.ENTRY_POINT_GROUP)
    replaced = [UnimportablePlugin(p.name, reason) if p.name == failing else p for p in installed]
    monkeypatch.setattr(plugins, "entry_points", lambda group: replaced if group == plugins.ENTRY_POINT_GROUP else [])
    return build_app()


def test_the_package_declares_both_plugins() -> None:
    points = plugins.plugin_entry_points()
    assert [(p.name, p.value) for p in points] == [("calibration", "calibration.cli:register"),
                                                  ("finetune", "finetune.cli:register")]
    assert all(isinstance(p, EntryPoint) for p in points)


def test_a_plugin_that_fails_to_import_only_removes_its_commands(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    app = app_with_failing_plugin(monkeypatch, "finetune", "No module named 'peft'")
    assert capsys.readouterr().err == "note: the finetune commands are unavailable: No module named 'peft'\n"
    assert listed(app) == [name for name in TOP_LEVEL if name not in FINETUNE_COMMANDS]
    assert listed(app, "model") == [name for name in MODEL if name not in ("tiny", "train", "published", "convert")]
    assert plugins.unavailable_plugins() == {"finetune": "No module named 'peft'"}


def test_without_any_plugin_the_daemon_commands_remain(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plugins, "_unavailable", {"stale": "from an earlier build"})
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    app = build_app()
    assert listed(app) == ["run", "check-config", "detect", "demo", "model", "queue"]
    assert listed(app, "model") == ["list", "add", "verify", "promote", "rollback", "set-base"]
    assert capsys.readouterr().err == "" and plugins.unavailable_plugins() == {}


def test_plugins_register_in_name_order_whatever_the_metadata_order(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = list(plugins.entry_points(group=plugins.ENTRY_POINT_GROUP))
    monkeypatch.setattr(plugins, "entry_points", lambda group: list(reversed(installed)))
    assert [p.name for p in plugins.plugin_entry_points()] == sorted(p.name for p in installed)
