"""The `station` section: defaults, argon2-only users (errors name the user, never the value), credential file."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.station.config import USERS_CREDENTIAL_FILE, StationConfig
from tests.agent.station.conftest import FAST_HASHER, user_entry


def test_defaults_serve_loopback_8080_with_no_users() -> None:
    config = StationConfig()
    assert (config.enabled, config.host, config.port, config.users, config.tls) == (True, "127.0.0.1", 8080, [], False)
    assert config.accounts() == {}


def test_every_field_has_a_default_and_a_description() -> None:
    for name, field in StationConfig.model_fields.items():
        assert field.description, name
        assert not field.is_required(), name


def test_users_are_keyed_by_name_with_their_roles() -> None:
    config = StationConfig.model_validate({"users": [user_entry("tech", "technician"), user_entry("view", "viewer")]})
    assert {n: u.role for n, u in config.accounts().items()} == {"tech": "technician", "view": "viewer"}


def test_a_plain_password_is_refused_naming_the_user_but_not_the_value() -> None:
    with pytest.raises(ValidationError) as caught:
        StationConfig.model_validate({"users": [{"name": "alice", "role": "technician", "password_hash": "hunter2"}]})
    (error,) = caught.value.errors()
    assert "user 'alice'" in error["msg"] and "not an argon2 hash" in error["msg"]
    assert "hunter2" not in error["msg"]


def test_the_hash_is_never_shown_when_the_config_is_printed() -> None:
    entry = user_entry("tech", "technician")
    dumped = StationConfig.model_validate({"users": [entry]}).model_dump(mode="json")
    assert entry["password_hash"] not in str(dumped)


@pytest.mark.parametrize(("users", "message"), [
    ([user_entry("tech", "technician"), user_entry("tech", "viewer")], "duplicate user names ['tech']"),
    ([{**user_entry("tech", "technician"), "role": "admin"}], "Input should be 'viewer' or 'technician'"),
    ([{**user_entry("tech", "technician"), "name": "no spaces"}], "user name 'no spaces'"),
])
def test_bad_users_are_refused(users: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        StationConfig.model_validate({"users": users})


def test_tls_needs_both_files() -> None:
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file must be given together"):
        StationConfig(tls_cert_file=Path("cert.pem"))
    assert StationConfig(tls_cert_file=Path("c.pem"), tls_key_file=Path("k.pem")).tls


def write_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    directory = tmp_path / "creds"
    directory.mkdir()
    (directory / USERS_CREDENTIAL_FILE).write_text(text)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory / USERS_CREDENTIAL_FILE


def test_users_also_come_from_the_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_credentials(tmp_path, monkeypatch, f"# name:role:hash\n\nbob:viewer:{FAST_HASHER.hash('pw')}\n")
    config = StationConfig.model_validate({"users": [user_entry("tech", "technician")]})
    assert {n: u.role for n, u in config.accounts().items()} == {"tech": "technician", "bob": "viewer"}
    assert [u.name for u in config.users] == ["tech"]  # the file's users never land in a printed config


def test_a_bad_credential_line_names_file_line_and_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = write_credentials(tmp_path, monkeypatch, "\nbob:technician:plaintext-password\n")
    with pytest.raises(ValidationError) as caught:
        StationConfig()
    message = caught.value.errors()[0]["msg"]
    assert f"{file} line 2: user 'bob': password_hash is not an argon2 hash" in message
    assert "plaintext-password" not in message


def test_a_credential_line_without_fields_is_not_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_credentials(tmp_path, monkeypatch, "s3cret-typed-here\n")
    with pytest.raises(ValidationError) as caught:
        StationConfig()
    message = caught.value.errors()[0]["msg"]
    assert "line 1: expected 'name:role:argon2-hash'" in message and "s3cret" not in message


def test_a_user_in_both_places_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_credentials(tmp_path, monkeypatch, f"tech:viewer:{FAST_HASHER.hash('pw')}\n")
    with pytest.raises(ValidationError, match=r"users \['tech'\] are defined both in station.users and in"):
        StationConfig.model_validate({"users": [user_entry("tech", "technician")]})


def test_the_base_url_of_image_urls_is_public_url_or_derived_from_the_listening_address(tmp_path: Path) -> None:
    assert StationConfig(public_url="https://box1.plant:8443/").base_url(8080) == "https://box1.plant:8443"
    assert StationConfig().base_url(8080) == "http://127.0.0.1:8080"
    assert StationConfig(host="0.0.0.0").base_url(8081) == f"http://{socket.getfqdn()}:8081"
    assert StationConfig(host="fd00::5").base_url(8080) == "http://[fd00::5]:8080"
    (tmp_path / "c.pem").write_text("x")
    tls = StationConfig(tls_cert_file=tmp_path / "c.pem", tls_key_file=tmp_path / "c.pem")
    assert tls.base_url(8443) == "https://127.0.0.1:8443"
    for bad in ("box1.plant:8443", "ftp://box1", "https://box1/?q=1"):
        with pytest.raises(ValidationError):
            StationConfig(public_url=bad)
