"""The app factory: no open documentation endpoints, bad fields named in 422s, a warning when nobody can log in."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from agent.station.app import create_app, field_name
from agent.station.audit import AuditLog
from agent.station.backend import StaticBackend
from agent.station.config import StationConfig
from agent.station.live import LiveBoard


def test_field_names_drop_the_location_but_keep_the_path() -> None:
    assert field_name(("body", "boxes", 0, "x1")) == "boxes.0.x1"
    assert field_name(("query", "limit")) == "limit"
    assert field_name(("body",)) == "body"


def test_an_app_without_users_warns_and_refuses_every_login(tmp_path: Path) -> None:
    with capture_logs() as logs:
        app = create_app(StationConfig(), StaticBackend(), LiveBoard(), AuditLog(tmp_path / "audit.jsonl"))
    assert any("nobody can log in" in entry["event"] for entry in logs)
    response = TestClient(app).post("/api/login", json={"name": "admin", "password": "admin"})
    assert response.status_code == 401


def test_no_documentation_endpoints(tmp_path: Path) -> None:
    client = TestClient(create_app(StationConfig(), StaticBackend(), LiveBoard(), AuditLog(tmp_path / "a.jsonl")))
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 404
