"""Health without login, everything else behind it; login, logout, /api/me, rate limits, audit lines."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi.routing import APIRoute

from agent.station.app import ROUTERS
from agent.station.guards import SESSION_COOKIE
from tests.agent.station.conftest import PASSWORDS, Station, feed

PUBLIC = {"/healthz", "/readyz", "/api/login", "/login"}


def test_health_probes_answer_without_login(station: Station) -> None:
    assert station.client.get("/healthz").json() == {"status": "ok"}
    ready = station.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_readyz_is_503_naming_the_failing_check(station: Station) -> None:
    station.backend.checks["mqtt"] = False
    response = station.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "checks": {"model": True, "mqtt": False, "cameras": True}}


def test_no_other_endpoint_answers_without_login(station: Station) -> None:
    feed(station.board)
    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) and r.path not in PUBLIC]
    assert len(routes) >= 8
    for route in routes:
        path = route.path.replace("{name}", "cam0").replace("{ident}", "1")
        for method in route.methods or ():
            response = station.client.request(method, path, follow_redirects=False)
            if path.startswith("/api/"):
                assert (response.status_code, response.json()) == (401, {"detail": "login required"}), path
            else:
                assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert station.client.get(path).status_code == 404


def test_login_opens_a_session_and_is_audited(station: Station) -> None:
    body = station.login("tech")
    assert (body["user"], body["role"]) == ("tech", "technician") and body["csrf_token"]
    assert re.match(r"^\d{4}-\d{2}-\d{2}T.*Z$", body["expires_at"])
    me = station.client.get("/api/me").json()
    assert me["csrf_token"] == body["csrf_token"] and me["role"] == "technician"
    (line,) = [json.loads(x) for x in station.audit_lines()]
    assert (line["who"], line["role"], line["action"]) == ("tech", "technician", "login")
    assert line["when"].endswith("Z")


def test_wrong_passwords_are_refused_and_audited_without_the_password(
        station: Station, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = station.client.post("/api/login", json={"name": "tech", "password": "guess-one"})
    unknown = station.client.post("/api/login", json={"name": "guess-two", "password": PASSWORDS["tech"]})
    assert wrong.status_code == unknown.status_code == 401
    assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")
    entries = [json.loads(x) for x in station.audit_lines()]
    assert [(e["who"], e["action"]) for e in entries] == [("tech", "login_failed"), (None, "login_failed")]
    logged = caplog.text + "\n".join(station.audit_lines())
    assert "guess-one" not in logged and "guess-two" not in logged and PASSWORDS["tech"] not in logged


def test_failed_logins_are_rate_limited_with_retry_after(station: Station) -> None:
    for _ in range(5):
        assert station.client.post("/api/login", json={"name": "tech", "password": "nope"}).status_code == 401
    refused = station.client.post("/api/login", json={"name": "tech", "password": PASSWORDS["tech"]})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    other_user_same_client = station.client.post("/api/login", json={"name": "view", "password": PASSWORDS["view"]})
    assert other_user_same_client.status_code == 429


def test_logout_ends_the_session_clears_the_cookie_and_is_audited(station: Station) -> None:
    station.login("view")
    response = station.client.post("/api/logout", headers=station.csrf())
    assert response.status_code == 200 and f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    assert station.client.get("/api/me").status_code == 401
    actions = [json.loads(x)["action"] for x in station.audit_lines()]
    assert actions == ["login", "logout"]


def test_an_old_cookie_is_useless_after_logout(station: Station) -> None:
    station.login("tech")
    token = station.client.cookies[SESSION_COOKIE]
    station.client.post("/api/logout", headers=station.csrf())
    station.client.cookies.set(SESSION_COOKIE, token)
    assert station.client.get("/api/me").status_code == 401


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "tech"}, "password"),
    ({"password": "x"}, "name"),
    ({"name": "tech", "password": "x", "role": "technician"}, "role"),
    ({"name": 5, "password": "x"}, "name"),
    ({"name": "tech", "password": "y" * 2000}, "password"),
    ([], "body"),
])
def test_bad_login_bodies_get_422_naming_the_field(station: Station, body: object, field: str) -> None:
    response = station.client.post("/api/login", json=body)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert response.json()["detail"].startswith(f"{field}: ")
    assert "y" * 100 not in response.text  # values are not echoed


@pytest.mark.parametrize(("content", "content_type"), [("{not json", "application/json"),
                                                        ("name=tech&password=x", "application/x-www-form-urlencoded"),
                                                        ('{"name": "tech", "password": "x"}', "text/plain")])
def test_non_json_login_bodies_are_refused(station: Station, content: str, content_type: str) -> None:
    response = station.client.post("/api/login", content=content, headers={"content-type": content_type})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body"


def test_audit_trail_for_technicians_newest_first(station: Station) -> None:
    station.login("tech")
    entries = station.client.get("/api/audit").json()["entries"]
    assert [e["action"] for e in entries] == ["login"]
    bad = station.client.get("/api/audit", params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "limit"
