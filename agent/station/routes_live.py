"""The live view's API: cameras, their latest annotated frame, recent fail/uncertain frames, and the live stream
(server-sent events: a `live` event whenever a camera has a new frame or status, polled 5 times a second; a new
frame travels inside the event as a data: URI, because an HTTP request per picture cost the inspection thread more
GIL time than the picture itself)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from agent.station.backend import CameraInfo
from agent.station.guards import SESSION_COOKIE, StationContext, check_csrf, require_login, station

LIVE_POLL_S = 0.2  # >= 2 updates a second per camera with margin; a browser shows at most ~4 new JPEGs a second
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies and the browser from dropping an idle stream
live = APIRouter(prefix="/api", dependencies=[Depends(require_login), Depends(check_csrf)])


def camera_names(ctx: StationContext) -> list[str]:
    """Configured cameras in the daemon's order, then any the board saw that the daemon did not list."""
    names = list(ctx.backend.cameras())
    return names + [n for n in ctx.board.cameras() if n not in names]


def camera_view(ctx: StationContext, name: str, info: CameraInfo | None) -> dict[str, Any]:
    """One camera for the page: capture status and counters, and its latest inspected frame (null before one)."""
    return {
        "name": name,
        "status": info.status if info is not None else "unknown",
        "reason": info.reason if info is not None else "",
        "counters": dict(info.counters) if info is not None else {},
        "live": ctx.board.state(name),
    }


async def known_camera(name: str, ctx: StationContext = Depends(station)) -> str:
    if name not in camera_names(ctx):
        raise HTTPException(404, f"unknown camera {name!r}")
    return name


@live.get("/cameras")
def cameras(ctx: StationContext = Depends(station)) -> dict[str, Any]:
    infos = ctx.backend.cameras()
    views = [camera_view(ctx, n, infos.get(n)) for n in camera_names(ctx)]
    return {"model": ctx.backend.model_version(), "cameras": views}


@live.get("/cameras/{name}/frame.jpg")
def frame_jpeg(name: str = Depends(known_camera), seq: int | None = Query(default=None, ge=1),
               ctx: StationContext = Depends(station)) -> Response:
    """The camera's shown frame `seq` (the one the live stream described; the current one when it is gone or not
    given) with boxes drawn; 404 until the camera has a frame."""
    data = ctx.board.jpeg(name, seq)
    if data is None:
        raise HTTPException(404, f"camera {name!r} has no inspected frame yet")
    return Response(data, media_type="image/jpeg")


@live.get("/cameras/{name}/recent")
async def recent(name: str = Depends(known_camera), ctx: StationContext = Depends(station)) -> dict[str, Any]:
    """The camera's last fail/uncertain frames, newest first, each with its thumbnail inline (a data: URI) and its
    full-size picture at recent/{id}.jpg. Served on the event loop (async): a worker thread would hand the GIL
    back and forth four times per request, each time taking it from inspection."""
    items = ctx.board.recent(name, thumbnails=True)
    for item in items:
        item["image"] = f"/api/cameras/{name}/recent/{item['id']}.jpg"
    return {"camera": name, "frames": items}


@live.get("/cameras/{name}/recent/{ident}.jpg")
def recent_jpeg(ident: int, name: str = Depends(known_camera), ctx: StationContext = Depends(station)) -> Response:
    data = ctx.board.recent_jpeg(name, ident)
    if data is None:
        raise HTTPException(404, f"camera {name!r} has no recent frame {ident} (only the last few are kept)")
    return Response(data, media_type="image/jpeg")


@live.get("/live")
async def live_stream(request: Request, ctx: StationContext = Depends(station)) -> StreamingResponse:
    """Server-sent events: `live` with the model and every camera that changed; `logout` when the session ends."""
    token = request.cookies.get(SESSION_COOKIE)
    return StreamingResponse(live_events(request, ctx, token), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


async def live_events(request: Request, ctx: StationContext, token: str | None) -> AsyncIterator[str]:
    seen: dict[str, tuple[Any, ...]] = {}
    last_sent = 0.0
    yield "retry: 2000\n\n"
    while not ctx.stopping.is_set() and not await request.is_disconnected():
        if ctx.sessions.get(token) is None:
            yield "event: logout\ndata: {}\n\n"
            return
        changed = with_pictures(ctx, changed_cameras(ctx, seen))
        if changed or not last_sent:
            payload = {"model": ctx.backend.model_version(), "cameras": changed}
            yield f"event: live\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keepalive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(LIVE_POLL_S)


def with_pictures(ctx: StationContext, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`views` with each shown frame's annotated JPEG as `live.jpeg` (a data: URI)."""
    for view in views:
        if view["live"] is not None:
            view["live"]["jpeg"] = ctx.board.jpeg_uri(view["name"], view["live"]["seq"])
    return views


def changed_cameras(ctx: StationContext, seen: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Views of the cameras whose frame or status changed since `seen` (updated in place)."""
    changed = []
    infos = ctx.backend.cameras()
    for name in camera_names(ctx):
        info = infos.get(name)
        signature = (ctx.board.seq(name), info.status if info else None, info.reason if info else None)
        if seen.get(name) != signature:
            seen[name] = signature
            changed.append(camera_view(ctx, name, info))
    return changed
