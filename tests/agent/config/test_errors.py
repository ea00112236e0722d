"""Config errors: every problem is listed with its dotted path and value; secrets never appear."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.config import ConfigError, dotted_path, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_every_error_is_listed_with_its_path_and_value(tmp_path: Path) -> None:
    text = (
        "device_id: a/b\n"
        "mqtt: {port: 70000, hots: x}\n"
        "cameras: [{name: c, source: x, fps: -1}]\n"
        "model: {thresholds: {dent: 0.3}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    errors = "\n".join(caught.value.errors)
    assert "device_id: device_id 'a/b' must be" in errors
    assert "mqtt.port: Input should be less than or equal to 65535 (got 70000)" in errors
    assert "mqtt.hots: Extra inputs are not permitted (got 'x')" in errors
    assert "cameras.0.fps: Input should be greater than 0 (got -1)" in errors
    assert "model.thresholds: thresholds for unknown classes ['dent']" in errors
    assert len(caught.value.errors) == 5


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    text = "mqtt: {password: hunter2, reconnect_min_s: 5, reconnect_max_s: 1}\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert "hunter2" not in str(caught.value)
    assert "reconnect_min_s (5.0) must not exceed" in str(caught.value)


def test_dotted_paths_quote_keys_that_are_not_plain_words() -> None:
    assert dotted_path(("mqtt", "tls", "ca_file")) == "mqtt.tls.ca_file"
    assert dotted_path(("cameras", 0, "name")) == "cameras.0.name"
    assert dotted_path(("mqtt", " .")) == 'mqtt[" ."]'
    assert dotted_path(()) == "<root>"


def test_check_config_exits_2_listing_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check-config", "--config", str(write(tmp_path, "mqtt: {port: 0}\n"))])
    assert result.exit_code == 2
    assert "mqtt.port: Input should be greater than or equal to 1 (got 0)" in result.output
