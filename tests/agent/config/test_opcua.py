"""The `opcua` section: secure defaults, and a config that could not work (or would not be safe) is an error."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError

from agent.config.opcua import OpcUaConfig

HASH = PasswordHasher().hash("pw")
USER = {"name": "plc", "password_hash": HASH}


def enabled(**keys: Any) -> OpcUaConfig:
    return OpcUaConfig.model_validate({"enabled": True, "security_policies": ["None"], "users": [USER], **keys})


def test_the_defaults_are_off_loopback_no_anonymous_and_encrypted() -> None:
    c = OpcUaConfig()
    assert (c.enabled, c.host, c.port, c.allow_anonymous) == (False, "127.0.0.1", 4840, False)
    assert c.security_policies == ["Basic256Sha256_SignAndEncrypt"]


def test_an_encrypted_policy_needs_the_servers_certificate_and_key() -> None:
    with pytest.raises(ValidationError, match="need certificate_file and private_key_file"):
        enabled(security_policies=["Basic256Sha256_SignAndEncrypt"])
    config = enabled(security_policies=["Basic256Sha256_Sign"], certificate_file="c.pem", private_key_file="k.pem")
    assert config.certificate_file == Path("c.pem")


def test_a_server_nobody_could_log_in_to_is_an_error() -> None:
    with pytest.raises(ValidationError, match="nobody could log in"):
        enabled(users=[])
    assert enabled(users=[], allow_anonymous=True).allow_anonymous


def test_a_plain_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        enabled(users=[{"name": "plc", "password_hash": "hunter2-plain"}])
    (error,) = refused.value.errors()
    assert "not an argon2 hash" in error["msg"] and "hunter2-plain" not in error["msg"]


def test_users_from_the_credentials_directory_join_the_configured_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "opcua.users").write_text(f"# line 2\nscada:{HASH}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert sorted(enabled().accounts()) == ["plc", "scada"]
    (tmp_path / "opcua.users").write_text(f"plc:{HASH}\n")
    with pytest.raises(ValidationError, match=r"defined twice .*\['plc'\]"):
        enabled()


def test_enabled_without_asyncua_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "asyncua" else real(name, *a))
    with pytest.raises(ValidationError, match=r"asyncua is not installed; install it with: pip install "
                       r"'edge-inspect\[opcua\]'"):
        enabled()
    assert not OpcUaConfig().enabled  # disabled needs nothing
