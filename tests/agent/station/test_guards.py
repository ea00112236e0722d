"""Login, role and CSRF guards, the session cookie's flags, security headers and the request body limit."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from agent.station.app import ROUTERS
from agent.station.guards import CSRF_HEADER, MAX_BODY_BYTES, SAFE_METHODS, SESSION_COOKIE
from tests.agent.station.conftest import Station, make_station, station_config


def test_session_cookie_is_httponly_samesite_strict_and_not_secure_without_tls(station: Station) -> None:
    response = station.client.post("/api/login", json={"name": "tech", "password": "correct horse battery"})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_under_tls(tmp_path: Path) -> None:
    config = station_config(tls_cert_file="cert.pem", tls_key_file="key.pem")
    made = make_station(tmp_path, config)
    response = made.client.post("/api/login", json={"name": "view", "password": "viewer secret 42"})
    assert "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize("headers", [{}, {CSRF_HEADER: ""}, {CSRF_HEADER: "forged-token"}])
def test_state_changes_without_the_sessions_csrf_token_are_refused(station: Station, headers: dict[str, str]) -> None:
    station.login("view")
    response = station.client.post("/api/logout", headers=headers)
    assert response.status_code == 403 and CSRF_HEADER in response.json()["detail"]
    assert station.client.get("/api/me").status_code == 200  # still logged in: nothing changed
    assert [line for line in station.audit_lines() if '"logout"' in line] == []


def test_every_state_changing_route_requires_the_csrf_token(station: Station) -> None:
    station.login("tech")
    routes = [(m, r.path) for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)
              for m in r.methods or () if m not in SAFE_METHODS and r.path != "/api/login"]
    assert ("POST", "/api/logout") in routes
    for method, path in routes:
        response = station.client.request(method, path.replace("{name}", "cam0"), json={})
        assert response.status_code == 403 and CSRF_HEADER in response.json()["detail"], (method, path)


def test_a_token_of_another_session_is_refused(station: Station, tmp_path: Path) -> None:
    station.login("tech")
    other = make_station(tmp_path / "other")
    other.login("tech")
    response = station.client.post("/api/logout", headers=other.csrf())
    assert response.status_code == 403


def test_the_right_csrf_token_passes(station: Station) -> None:
    station.login("view")
    assert station.client.post("/api/logout", headers=station.csrf()).status_code == 200


def test_viewer_is_refused_on_technician_endpoints(station: Station) -> None:
    station.login("view")
    response = station.client.get("/api/audit")
    assert response.status_code == 403 and "technician" in response.json()["detail"]
    station.client.post("/api/logout", headers=station.csrf())
    station.login("tech")
    assert station.client.get("/api/audit").status_code == 200


def test_every_response_carries_security_headers_and_api_answers_are_not_cached(station: Station) -> None:
    for path in ("/healthz", "/login", "/api/me"):
        headers = station.client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in headers["content-security-policy"]
    assert station.client.get("/api/me").headers["cache-control"] == "no-store"


def test_a_body_over_the_limit_is_refused_before_it_is_read(station: Station) -> None:
    huge = '{"name": "tech", "password": "' + "x" * MAX_BODY_BYTES + '"}'
    response = station.client.post("/api/login", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "request body over" in response.json()["detail"]


def test_a_chunked_body_over_the_limit_is_refused(station: Station) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"name": "tech", "password": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = station.client.post("/api/login", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_the_live_pages_requests_never_hop_to_a_worker_thread() -> None:
    # FastAPI runs a plain `def` endpoint or dependency on a worker thread; each hop takes the GIL from inspection
    def calls(dependant: object) -> list[object]:
        found = [getattr(dependant, "call", None)]
        for sub in getattr(dependant, "dependencies", []):
            found += calls(sub)
        return [c for c in found if c is not None]

    paths = {"/api/live", "/api/cameras/{name}/recent"}
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) and r.path in paths]
    assert {r.path for r in routes} == paths
    for route in routes:
        for call in calls(route.dependant):
            assert inspect.iscoroutinefunction(call), f"{route.path}: {getattr(call, '__name__', call)} is sync"
