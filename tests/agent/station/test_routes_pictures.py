"""`GET /api/pictures/{id}.jpg`: any logged-in user (a viewer is enough), nobody else; 404 naming an evicted id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from agent.pictures import PictureStore
from agent.station.app import create_app
from agent.station.audit import AuditLog
from agent.station.backend import StaticBackend
from agent.station.live import LiveBoard
from tests.agent.station.conftest import PASSWORDS, detections, station_config
from tests.agent.test_pictures import Limits


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, PictureStore]]:
    store = PictureStore(tmp_path / "pictures", Limits(max_count=1))
    app = create_app(station_config(), StaticBackend(), LiveBoard(), AuditLog.in_state_dir(tmp_path), pictures=store)
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
