"""The daemon's hold on its station: started with the daemon, restarted on a reload's new settings, stopped.

The server stack (FastAPI, uvicorn: ~10 MB) is imported only once a station is enabled (`agent/station/hosting.py`).
A station that cannot start with the daemon is logged and the daemon inspects without it; one that cannot start on
a reload's new settings (port taken, unreadable TLS file) refuses the reload: the station goes back to the settings
it ran with, and the reload's reply says why. A restart ends the station's sessions: people log in again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.learn.queue import LearningQueue
from agent.pictures import PictureKeeper, PictureLimits, PictureStore, keeper_from_settings
from agent.station.audit import AuditCallback
from agent.station.backend import StationBackend
from agent.station.config import StationConfig
from agent.station.live import LiveBoard

if TYPE_CHECKING:
    from agent.station.server import StationServer

log = structlog.get_logger("agent.station")


class StationRefused(RuntimeError):
    """The station cannot serve on a reload's new settings; it serves on its old ones again."""


class StationLink:
    """The running station (or None) and the settings it runs with; what every start needs besides the config."""

    def __init__(self, state_dir: Path, backend: StationBackend, board: LiveBoard, queue: LearningQueue | None,
                 on_audit: AuditCallback | None) -> None:
        self.state_dir, self.backend, self.board, self.queue, self.on_audit = state_dir, backend, board, queue, on_audit
        self.server: StationServer | None = None
        self.config: StationConfig | None = None
        self.pictures: PictureStore | None = None

    def start(self, config: StationConfig, pictures: PictureStore | None) -> StationServer | None:
        """Start with the daemon: a station that cannot start is logged, and None."""
        self.config, self.pictures = config, pictures
        if not config.enabled:
            return None  # so FastAPI and uvicorn are never imported
        from agent.station.hosting import start_station

        self.server = start_station(config, self.state_dir, self.backend, self.board, self.queue, self.on_audit,
                                    pictures)
        return self.server

    def restart(self, config: StationConfig, pictures: PictureStore | None) -> None:
        """Serve on new settings; `StationRefused` (with the old settings serving again) when they cannot work."""
        old = self.config, self.pictures
        self.stop()
        try:
            self.server = self._open(config, pictures)
        except (OSError, ValueError) as exc:
            log.error("station cannot serve on its new settings; back on the old ones", host=config.host,
                      port=config.port, error=str(exc))
            if old[0] is not None:
                self.start(old[0], old[1])
            raise StationRefused(f"station: cannot serve on {config.host}:{config.port}: {exc}") from exc
        self.config, self.pictures = config, pictures
        log.info("station restarted on new settings", url=self.server.url if self.server else None)

    def follow(self, config: StationConfig, pictures: PictureLimits, before: PictureLimits,
               keeper: PictureKeeper) -> PictureKeeper:
        """A reload's station and pictures settings (`before`: the running pictures'): the keeper results use from now
        on. Picture limits alone apply in place; anything else restarts the station with a new keeper
        (`StationRefused`: nothing changed)."""
        if config == self.config and pictures.enabled == before.enabled:
            if keeper.store is not None:
                keeper.store.config = pictures
            return keeper
        new = keeper_from_settings(pictures, self.state_dir, config.enabled)
        self.restart(config, new.store)
        new.base_url = self.base_url()
        return new

    def _open(self, config: StationConfig, pictures: PictureStore | None) -> StationServer | None:
        if not config.enabled:
            return None
        from agent.station.hosting import open_station

        return open_station(config, self.state_dir, self.backend, self.board, self.queue, self.on_audit, pictures)

    def base_url(self) -> str | None:
        """Where results' pictures are served: None without a running station."""
        if self.server is None or self.config is None:
            return None
        return self.config.base_url(self.server.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
