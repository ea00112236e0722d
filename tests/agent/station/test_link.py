"""The daemon's hold on its station across reloads: picture limits apply in place, other changes restart the station,
and settings it cannot serve on are refused with the old ones serving again."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from agent.config import PicturesConfig
from agent.pictures import keeper_from_settings
from agent.station.backend import StaticBackend
from agent.station.link import StationLink, StationRefused
from agent.station.live import LiveBoard
from tests.agent.station.conftest import station_config


def healthy(url: str) -> bool:
    return httpx.get(f"{url}healthz", timeout=5).status_code == 200


def test_limits_apply_in_place_anything_else_restarts_and_a_port_in_use_is_refused(tmp_path: Path) -> None:
    link = StationLink(tmp_path, StaticBackend(), LiveBoard(), None, None)
    config, pictures = station_config(port=0), PicturesConfig()
    keeper = keeper_from_settings(pictures, tmp_path, config.enabled)
    server = link.start(config, keeper.store)
    try:
        assert server is not None and healthy(server.url)
        smaller = PicturesConfig(max_count=5)
        assert link.follow(config, smaller, pictures, keeper) is keeper and link.server is server
        assert keeper.store is not None and keeper.store.config.max_count == 5

        off = link.follow(config, PicturesConfig(enabled=False), smaller, keeper)
        assert off.store is None and link.server is not server and link.server is not None
        assert healthy(link.server.url) and off.base_url == link.base_url()

        running = link.server
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with pytest.raises(StationRefused, match=f"cannot serve on 127.0.0.1:{port}"):
                link.restart(station_config(port=port), None)
        assert link.server is not None and link.server is not running and link.config == config
        assert healthy(link.server.url)  # back on the settings it ran with
    finally:
        link.stop()
    assert link.server is None and link.base_url() is None
