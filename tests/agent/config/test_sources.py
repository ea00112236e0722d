"""Config sources: credential files fill secrets; an unreadable file or a document that is not a mapping is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings
from agent.config.sources import read_yaml


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_secrets_come_from_the_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt.password").write_text("s3cret\n")
    (creds / "commands.hmac_key").write_text("k3y")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    settings = load_settings(write(tmp_path, "commands: {require_signature: true}\n"))
    assert settings.mqtt.password is not None and settings.mqtt.password.get_secret_value() == "s3cret"
    assert settings.commands.hmac_key is not None and settings.commands.hmac_key.get_secret_value() == "k3y"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("- just a list\n", "top level must be a mapping"),
        ("mqtt: {port: [\n", "not valid YAML"),
        ("?\n", "top level: keys should be setting names (text), got None"),  # found by tests/fuzz
        ("1: 2\n2.5: x\n", "top level: keys should be setting names (text), got 2.5"),  # every one listed
    ],
)
def test_invalid_files_are_refused_with_a_reason(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match="invalid config") as caught:
        load_settings(write(tmp_path, text))
    assert any(reason in line for line in caught.value.errors), caught.value.errors


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_settings(tmp_path / "nope.yaml")


def test_an_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    assert read_yaml(write(tmp_path, "# nothing set\n")) == {}
