"""Config: the issue's example loads as written; env and credential files override; every error names its path."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.config import ConfigError, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_example_from_the_issue_loads_as_written() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.device_id == "line1-box1"
    assert [(c.name, c.source, c.fps, c.mode) for c in settings.cameras] == [
        ("cam0", "synthetic:seed=1", 10, "free-run")
    ]
    assert settings.base_topic == "edge-inspect/line1-box1"
    assert settings.client_id == "edge-inspect-line1-box1"


def test_env_overrides_yaml_nested_with_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_INSPECT_MQTT__PORT", "1884")
    monkeypatch.setenv("EDGE_INSPECT_DEVICE_ID", "line2-box7")
    settings = load_settings(EXAMPLE)
    assert (settings.mqtt.port, settings.mqtt.host, settings.device_id) == (1884, "127.0.0.1", "line2-box7")


def test_secrets_come_from_the_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt.password").write_text("s3cret\n")
    (creds / "commands.hmac_key").write_text("k3y")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = load_settings(write(tmp_path, "commands: {require_signature: true}\n"))
    assert settings.mqtt.password is not None and settings.mqtt.password.get_secret_value() == "s3cret"
    assert settings.commands.hmac_key is not None and settings.commands.hmac_key.get_secret_value() == "k3y"


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


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("cameras: [{name: a, source: x}, {name: a, source: y}]\n", "cameras: duplicate camera names ['a']"),
        ("mqtt: {tls: {cert_file: c.pem}}\n", "mqtt.tls: cert_file and key_file must be given together"),
        ("commands: {require_signature: true}\n", "commands: require_signature is true but no hmac_key"),
        ("mqtt: {prefix: 'plant/+/x'}\n", "mqtt.prefix: prefix level"),
        ("- just a list\n", "top level must be a mapping"),
        ("mqtt: {port: [\n", "not valid YAML"),
    ],
)
def test_invalid_files_are_refused_with_a_reason(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match="invalid config") as caught:
        load_settings(write(tmp_path, text))
    assert any(reason in line for line in caught.value.errors), caught.value.errors


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    text = "mqtt: {password: hunter2, reconnect_min_s: 5, reconnect_max_s: 1}\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert "hunter2" not in str(caught.value)
    assert "reconnect_min_s (5.0) must not exceed" in str(caught.value)


def test_check_config_prints_resolved_yaml_with_secrets_masked(tmp_path: Path) -> None:
    path = write(tmp_path, "device_id: box9\nmqtt: {username: hmi, password: hunter2}\n")
    result = CliRunner().invoke(app, ["check-config", "--config", str(path)])
    assert result.exit_code == 0
    assert "device_id: box9" in result.output and "session_expiry_s: 3600" in result.output
    assert "hunter2" not in result.output and "**********" in result.output


def test_check_config_exits_2_listing_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check-config", "--config", str(write(tmp_path, "mqtt: {port: 0}\n"))])
    assert result.exit_code == 2
    assert "mqtt.port: Input should be greater than or equal to 1 (got 0)" in result.output


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_settings(tmp_path / "nope.yaml")
