"""`GET /api/pictures/{id}.jpg`: any logged-in user (a viewer is enough) or an HMI's read-only token, nobody else;
404 naming an evicted id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from agent.config import format_validation_errors
from agent.pictures import PictureStore
from agent.station.app import create_app
from agent.station.audit import AuditLog
from agent.station.backend import StaticBackend
from agent.station.hmi_tokens import new_token
from agent.station.live import LiveBoard
from tests.agent.station.conftest import PASSWORDS, detections, station_config
from tests.agent.test_pictures import Limits

TOKEN, TOKEN_HASH = new_token()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, PictureStore]]:
    store = PictureStore(tmp_path / "pictures", Limits(max_count=1))
    config = station_config(hmi_tokens=[{"name": "hmi-1", "token_hash": TOKEN_HASH}])
    app = create_app(config, StaticBackend(), LiveBoard(), AuditLog.in_state_dir(tmp_path), pictures=store)
    with TestClient(app) as client:
        yield client, store


def picture(store: PictureStore) -> str:
    ident = store.save(np.full((240, 320, 3), 90, np.uint8), detections(["hole"], [0.9]))
    assert ident is not None
    return ident


def test_a_viewer_gets_the_jpeg_and_nobody_without_a_session_does(served) -> None:
    client, store = served
    ident = picture(store)
    assert client.get(f"/api/pictures/{ident}.jpg").status_code == 401
    assert client.post("/api/login", json={"name": "view", "password": PASSWORDS["view"]}).status_code == 200
    answer = client.get(f"/api/pictures/{ident}.jpg")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/jpeg"
    assert answer.content == store.read(ident) and answer.headers["cache-control"] == "no-store"


def test_an_evicted_or_unknown_picture_answers_404_naming_it(served) -> None:
    client, store = served
    client.post("/api/login", json={"name": "view", "password": PASSWORDS["view"]})
    first = picture(store)
    picture(store)  # max_count 1: the first is evicted
    gone = client.get(f"/api/pictures/{first}.jpg")
    assert gone.status_code == 404 and first in gone.json()["detail"]
    assert client.get("/api/pictures/..%2Fconfig.jpg").status_code == 404


def test_an_hmi_token_opens_pictures_and_nothing_else(served) -> None:
    client, store = served
    ident = picture(store)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    answer = client.get(f"/api/pictures/{ident}.jpg", headers=bearer)
    assert answer.status_code == 200 and answer.content == store.read(ident)
    for wrong in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer ", TOKEN_HASH):
        assert client.get(f"/api/pictures/{ident}.jpg", headers={"Authorization": wrong}).status_code == 401
    assert client.get("/api/cameras", headers=bearer).status_code == 401
    assert client.get("/api/me", headers=bearer).status_code == 401


def test_the_config_takes_only_token_hashes_and_never_shows_them() -> None:
    with pytest.raises(ValidationError) as refused:
        station_config(hmi_tokens=[{"name": "hmi-1", "token_hash": TOKEN}])  # the token pasted instead of its hash
    (message,) = format_validation_errors(refused.value)  # what check-config and the daemon's start print
    assert "hmi-1" in message and "sha256:<64 hex>" in message and TOKEN not in message
    with pytest.raises(ValidationError, match="duplicate HMI token names"):
        station_config(hmi_tokens=[{"name": "a", "token_hash": TOKEN_HASH}, {"name": "a", "token_hash": TOKEN_HASH}])
    config = station_config(hmi_tokens=[{"name": "hmi-1", "token_hash": TOKEN_HASH}])
    assert TOKEN_HASH not in repr(config) and TOKEN_HASH not in config.model_dump_json()
