"""The pictures behind results' `image_url`: `GET /api/pictures/{id}.jpg`, any logged-in user (viewer is enough).

An HMI logs in like a browser (`POST /api/login`, then sends the session cookie); a picture evicted by retention
(`pictures.max_count` / `max_bytes`) answers 404 naming its id.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response

from agent.station.guards import StationContext, check_csrf, require_login, station

pictures_api = APIRouter(prefix="/api", dependencies=[Depends(require_login), Depends(check_csrf)])


@pictures_api.get("/pictures/{ident}.jpg")
def picture_jpeg(ident: str, ctx: StationContext = Depends(station)) -> Response:
    """The annotated JPEG of a fail/uncertain result; 404 when it was evicted (or never existed)."""
    data = ctx.pictures.read(ident) if ctx.pictures is not None else None
    if data is None:
        raise HTTPException(404, f"picture {ident!r} is not kept (evicted by retention, or no such picture)")
    return Response(data, media_type="image/jpeg")
