"""Starting the station inside the daemon: audit log, app and server from the settings, failures contained.

A station that cannot start (port in use, unreadable TLS file) is logged and announced, and the daemon goes on
inspecting without it: the line matters more than the browser.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import structlog
from argon2 import PasswordHasher

from agent.learn.queue import LearningQueue
from agent.pictures import PictureStore
from agent.statedir import StateDir
from agent.station.app import create_app
from agent.station.audit import AuditCallback, AuditLog
from agent.station.backend import StationBackend
from agent.station.config import StationConfig, read_users_file
from agent.station.live import LiveBoard
from agent.station.server import StationServer

log = structlog.get_logger("agent.station")


def start_station(config: StationConfig, state_dir: Path, backend: StationBackend, board: LiveBoard,
                  queue: LearningQueue | None = None, on_audit: AuditCallback | None = None,
                  pictures: PictureStore | None = None) -> StationServer | None:
    """The running station server, or None when it is disabled or could not start (logged with the reason).
    `pictures`: the fail/uncertain pictures results link to (None: /api/pictures answers 404)."""
    try:
        return open_station(config, state_dir, backend, board, queue, on_audit, pictures)
    except (OSError, ValueError) as exc:  # e.g. the port is taken: inspection goes on without the station
        log.error("station not started; the daemon inspects without it", host=config.host, port=config.port,
                  error=str(exc))
        return None


def open_station(config: StationConfig, state_dir: Path, backend: StationBackend, board: LiveBoard,
                 queue: LearningQueue | None = None, on_audit: AuditCallback | None = None,
                 pictures: PictureStore | None = None) -> StationServer | None:
    """`start_station`, but a station that cannot start raises (OSError, ValueError) instead: a reload that moves
    the station must know."""
    if not config.enabled:
        return None
    config = with_initial_admin(config, state_dir)
    audit = AuditLog.in_state_dir(state_dir, on_entry=on_audit)
    server = StationServer(create_app(config, backend, board, audit, queue, pictures), config)
    server.start()
    return server


def with_initial_admin(config: StationConfig, state_dir: Path) -> StationConfig:
    """With no user configured, a technician `admin` (like Frigate's first start): its argon2 hash goes to
    `state/station.users`, its random password to `state/station-admin.password` (mode 0600), never to the log."""
    if config.accounts():
        return config
    state = StateDir(state_dir)
    if not state.station_users.is_file():
        password = secrets.token_urlsafe(12)
        state.root.mkdir(parents=True, exist_ok=True)
        write_private(state.station_admin_password, password + "\n")
        write_private(state.station_users, f"admin:technician:{PasswordHasher().hash(password)}\n")
    log.warning("station has no configured users: log in as 'admin' with the password in the file",
                file=str(state.station_admin_password))
    return config.model_copy(update={"users": read_users_file(state.station_users)})


def write_private(path: Path, text: str) -> None:
    """Create `path` readable and writable by its owner only, before any secret is in it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
