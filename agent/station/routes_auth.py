"""Health probes (the only answers without login), login, logout, who am I, and the audit trail."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.station.audit import rfc3339_utc
from agent.station.auth import Session
from agent.station.guards import (
    SESSION_COOKIE,
    StationContext,
    check_csrf,
    clear_session_cookie,
    client_address,
    require_login,
    require_technician,
    set_session_cookie,
    station,
)

public = APIRouter()
signed_in = APIRouter(prefix="/api", dependencies=[Depends(require_login), Depends(check_csrf)])
technician = APIRouter(prefix="/api", dependencies=[Depends(require_technician), Depends(check_csrf)])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@public.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and serving (liveness)."""
    return {"status": "ok"}


@public.get("/readyz")
def readyz(ctx: StationContext = Depends(station)) -> JSONResponse:
    """200 when every readiness check of the daemon passes (model loaded, MQTT, cameras), else 503."""
    checks = dict(ctx.backend.readiness())
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@public.post("/api/login")
def login(body: LoginRequest, request: Request, ctx: StationContext = Depends(station)) -> JSONResponse:
    """Check the password (argon2, on a worker thread), open a session and set its cookie. Failed attempts count
    per client address and per user name; over the limit the answer is 429 with Retry-After."""
    client = client_address(request)
    keys = [f"client:{client}", f"user:{body.name}"]
    wait = ctx.limiter.retry_after(keys)
    if wait > 0:
        raise HTTPException(429, "too many failed logins; try again later",
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})
    user = ctx.passwords.check(body.name, body.password)
    if user is None:
        ctx.limiter.failed(keys)
        known = body.name in ctx.config.accounts()  # an unknown "name" may be a password typed in the wrong box
        ctx.audit.record(body.name if known else None, None, "login_failed", client=client)
        raise HTTPException(401, "wrong user name or password")
    ctx.limiter.succeeded(keys[1])
    token, session = ctx.sessions.create(user.name, user.role)
    ctx.audit.record(user.name, user.role, "login", client=client)
    response = JSONResponse(me_payload(session))
    set_session_cookie(response, token, ctx.config)
    return response


@signed_in.post("/logout")
def logout(request: Request, session: Session = Depends(require_login),
           ctx: StationContext = Depends(station)) -> JSONResponse:
    ctx.sessions.drop(request.cookies.get(SESSION_COOKIE))
    ctx.audit.record(session.user, session.role, "logout", client=client_address(request))
    response = JSONResponse({"ok": True})
    clear_session_cookie(response, ctx.config)
    return response


@signed_in.get("/me")
def me(session: Session = Depends(require_login)) -> dict[str, Any]:
    """Who is logged in, their role, and the CSRF token every state-changing request must send."""
    return me_payload(session)


@technician.get("/audit")
def audit_trail(limit: int = Query(default=100, ge=1, le=1000),
                ctx: StationContext = Depends(station)) -> dict[str, Any]:
    """The last `limit` audit entries, newest first."""
    return {"entries": list(reversed(ctx.audit.tail(limit)))}


def me_payload(session: Session) -> dict[str, Any]:
    expires = datetime.fromtimestamp(session.expires_wall, timezone.utc)
    return {"user": session.user, "role": session.role, "csrf_token": session.csrf_token,
            "expires_at": rfc3339_utc(expires)}
