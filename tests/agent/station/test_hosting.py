"""Starting the station from the daemon's settings: disabled, started, or contained when it cannot start."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

from argon2 import PasswordHasher

from agent.station.backend import StaticBackend
from agent.station.hosting import start_station, with_initial_admin
from agent.station.live import LiveBoard
from tests.agent.station.conftest import station_config


def test_a_disabled_station_is_not_started(tmp_path: Path) -> None:
    assert start_station(station_config(enabled=False), tmp_path, StaticBackend(), LiveBoard()) is None


def test_a_started_station_answers_health_and_writes_its_audit_log_in_the_state_dir(tmp_path: Path) -> None:
    server = start_station(station_config(port=0), tmp_path, StaticBackend(), LiveBoard())
    assert server is not None
    try:
        with urllib.request.urlopen(f"{server.url}healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        server.stop()


def test_a_taken_port_leaves_the_daemon_without_a_station_instead_of_failing(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert start_station(station_config(port=port), tmp_path, StaticBackend(), LiveBoard()) is None


def test_with_no_users_the_first_start_creates_an_admin_whose_password_only_its_owner_can_read(tmp_path: Path
                                                                                               ) -> None:
    config = with_initial_admin(station_config(users=[]), tmp_path)
    password_file = tmp_path / "station-admin.password"
    password = password_file.read_text().strip()
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "station.users").stat().st_mode & 0o777) == "0o600"
    admin = config.accounts()["admin"]
    assert admin.role == "technician" and PasswordHasher().verify(admin.password_hash.get_secret_value(), password)
    again = with_initial_admin(station_config(users=[]), tmp_path)  # a restart keeps the same admin
    assert again.accounts()["admin"].password_hash == admin.password_hash


def test_configured_users_mean_no_initial_admin(tmp_path: Path) -> None:
    config = with_initial_admin(station_config(), tmp_path)
    assert "admin" not in config.accounts() and not (tmp_path / "station.users").exists()
