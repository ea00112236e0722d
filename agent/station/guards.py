"""What every request of the station passes through: its shared state, login, role and CSRF checks, the session
cookie, the shape of a bad-input answer, and the hardening middleware (security headers, request body limit).

The checks are `async` although they never wait: FastAPI runs a plain `def` dependency on a worker thread, and each
such hop hands the GIL back and forth, taking it from inspection a few more times per request."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.learn.queue import LearningQueue
from agent.pictures import PictureStore
from agent.station.audit import AuditLog
from agent.station.auth import LoginLimiter, PasswordChecker, Session, SessionStore
from agent.station.backend import StationBackend
from agent.station.config import StationConfig
from agent.station.grounding import GroundingQueries
from agent.station.hmi_tokens import HmiTokens
from agent.station.live import LiveBoard

SESSION_COOKIE = "edge_inspect_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY_BYTES = 64 * 1024  # no request of the station carries more; a bigger one is refused before it is read
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
]
NO_STORE = [(b"cache-control", b"no-store")]  # API answers (frames, CSRF tokens) must not sit in any cache


@dataclass
class StationContext:
    """Everything the routes share; one per app, kept in `app.state.station`."""

    config: StationConfig
    backend: StationBackend
    board: LiveBoard
    audit: AuditLog
    passwords: PasswordChecker
    sessions: SessionStore
    limiter: LoginLimiter
    queue: LearningQueue | None = None  # the learning queue the review page works on (None: no review)
    pictures: PictureStore | None = None  # the pictures behind results' image_url (None: none kept)
    hmi_tokens: HmiTokens = field(default_factory=lambda: HmiTokens([]))  # bearer tokens that may fetch pictures
    grounding: GroundingQueries = field(default_factory=GroundingQueries)  # the review page's "find the ..." queries
    stopping: threading.Event = field(default_factory=threading.Event)  # set by the server runner on stop()


async def station(request: Request) -> StationContext:
    ctx: StationContext = request.app.state.station
    return ctx


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def session_of(request: Request, ctx: StationContext) -> Session | None:
    return ctx.sessions.get(request.cookies.get(SESSION_COOKIE))


async def require_login(request: Request, ctx: StationContext = Depends(station)) -> Session:
    """The caller's session, or 401 (JSON) when there is none or it expired."""
    session = session_of(request, ctx)
    if session is None:
        raise HTTPException(401, "login required")
    return session


async def require_technician(session: Session = Depends(require_login)) -> Session:
    if session.role != "technician":
        raise HTTPException(403, f"role {session.role!r} may not do this; a technician may")
    return session


async def check_csrf(request: Request, session: Session = Depends(require_login)) -> None:
    """Every state-changing request must echo the session's CSRF token (from /api/me) in the X-CSRF-Token header."""
    if request.method not in SAFE_METHODS and not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header (get it from /api/me)")


def field_errors(errors: list[dict[str, str]], status_code: int = 422) -> JSONResponse:
    """The answer to bad input: every bad field named (`boxes.0.x2`) with what is wrong; values are never echoed."""
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=status_code)


def set_session_cookie(response: Response, token: str, config: StationConfig) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=round(config.session_hours * 3600), path="/",
                        httponly=True, samesite="strict", secure=config.tls)


def clear_session_cookie(response: Response, config: StationConfig) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=config.tls)


class Hardening:
    """ASGI middleware: security headers on every response; a body over `max_body` bytes gets 413 unread."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = [*SECURITY_HEADERS, *NO_STORE] if scope["path"].startswith("/api/") else SECURITY_HEADERS

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if self._declared_length(scope) > self.max_body:
            await self._too_large(send_hardened)
            return
        await self.app(scope, self._limited(receive), send_hardened)

    def _declared_length(self, scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                return int(value) if value.isdigit() else self.max_body + 1
        return 0

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that refuses (413, raised where FastAPI reads the body) once a chunked body grows too big."""
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise HTTPException(413, f"request body over {self.max_body} bytes")
            return message

        return limited

    async def _too_large(self, send: Send) -> None:
        body = b'{"detail":"request body over %d bytes"}' % self.max_body
        headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
