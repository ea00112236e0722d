"""The settings root: the issue's example loads as written; env overrides YAML; the resolved dump masks secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.config import Settings, dump_settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_example_from_the_issue_loads_as_written() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.device_id == "line1-box1"
    assert [(c.name, c.source, c.fps, c.mode) for c in settings.cameras] == [
        ("cam0", "synthetic:seed=1,size=128", 10, "free-run")
    ]
    assert settings.base_topic == "edge-inspect/line1-box1"
    assert settings.client_id == "edge-inspect-line1-box1"


def test_env_overrides_yaml_nested_with_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_INSPECT_MQTT__PORT", "1884")
    monkeypatch.setenv("EDGE_INSPECT_DEVICE_ID", "line2-box7")
    settings = load_settings(EXAMPLE)
    assert (settings.mqtt.port, settings.mqtt.host, settings.device_id) == (1884, "127.0.0.1", "line2-box7")


def test_without_a_file_the_defaults_load_and_the_dump_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_INSPECT_MQTT__PASSWORD", "hunter2")
    settings = load_settings()
    assert isinstance(settings, Settings) and settings.device_id == "edge-inspect"
    dumped = dump_settings(settings)
    assert dumped["mqtt"]["password"] == "**********" and dumped["state_dir"] == "state"


def test_check_config_prints_resolved_yaml_with_secrets_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: box9\nmqtt: {username: hmi, password: hunter2}\n")
    result = CliRunner().invoke(app, ["check-config", "--config", str(path)])
    assert result.exit_code == 0
    assert "device_id: box9" in result.output and "session_expiry_s: 3600" in result.output
    assert "hunter2" not in result.output and "**********" in result.output
