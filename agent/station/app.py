"""The station's ASGI app, built from its config, the daemon's `StationBackend`, the `LiveBoard` and the audit log.

Only /healthz, /readyz, the login page (with its static files) and /api/login answer without a session: the API
answers 401 (JSON), pages redirect to /login. There are no /docs or /openapi.json (they would answer without
login). A request body that does not validate gets 422 with each bad field named, never echoing its value.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from agent.learn.queue import LearningQueue
from agent.pictures import PictureStore
from agent.station.audit import AuditLog
from agent.station.auth import LoginLimiter, PasswordChecker, SessionStore
from agent.station.backend import StationBackend
from agent.station.config import StationConfig
from agent.station.guards import Hardening, StationContext, field_errors
from agent.station.hmi_tokens import HmiTokens
from agent.station.live import LiveBoard
from agent.station.pages import STATIC_DIR, pages
from agent.station.routes_auth import public, signed_in, technician
from agent.station.routes_live import live
from agent.station.routes_pictures import pictures_api
from agent.station.routes_review import review
from agent.station.routes_runs import runs, runs_page

log = structlog.get_logger("agent.station")
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
# every router of the app; only `public` may hold routes without require_login and check_csrf (tests hold it to that),
# except `pictures_api`: one GET that also takes an HMI's read-only bearer token (routes_pictures.py:picture_reader)
ROUTERS = (public, signed_in, technician, live, pictures_api, review, runs, pages, runs_page)


def create_app(config: StationConfig, backend: StationBackend, board: LiveBoard, audit: AuditLog,
               queue: LearningQueue | None = None, pictures: PictureStore | None = None) -> FastAPI:
    """The station app; `app.state.station` holds its shared state (the server runner sets its `stopping`).
    `queue` is the learning queue the review page works on (its API answers 503 without one); `pictures` the
    fail/uncertain pictures results link to (/api/pictures answers 404 without them)."""
    app = FastAPI(title="edge-inspect station", docs_url=None, redoc_url=None, openapi_url=None)
    accounts = config.accounts()
    app.state.station = StationContext(
        config=config, backend=backend, board=board, audit=audit, passwords=PasswordChecker(accounts),
        sessions=SessionStore(config.session_hours * 3600),
        limiter=LoginLimiter(config.login_attempts, config.login_window_s), queue=queue, pictures=pictures,
        hmi_tokens=HmiTokens(config.hmi_tokens),
    )
    app.add_exception_handler(RequestValidationError, validation_failed)  # type: ignore[arg-type]
    app.add_middleware(Hardening)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if not accounts:
        log.warning("the station has no users: nobody can log in (add station.users or a station.users credential)")
    return app


async def validation_failed(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming every bad field (`name: String should have at most 64 characters`); values are not echoed."""
    errors = [{"field": "body" if e["type"] == "json_invalid" else field_name(e["loc"]), "message": e["msg"]}
              for e in exc.errors()]
    return field_errors(errors)


def field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """`("body", "boxes", 0, "x1")` -> `boxes.0.x1`; a whole body that is missing or not JSON -> `body`."""
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts)
