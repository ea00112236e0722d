"""The pictures behind results' `image_url`: `GET /api/pictures/{id}.jpg`, for any logged-in user (viewer is enough)
or an HMI holding one of `station.hmi_tokens` (`Authorization: Bearer <token>`; the only route a token opens).

A picture evicted by retention (`pictures.max_count` / `max_bytes`) answers 404 naming its id.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from agent.station.guards import StationContext, session_of, station

pictures_api = APIRouter(prefix="/api")


def picture_reader(request: Request, ctx: StationContext = Depends(station)) -> str:
    """Who is asking: a session's user, or the HMI whose token the request carries; else 401 as for every API."""
    session = session_of(request, ctx)
    if session is not None:
        return session.user
    holder = ctx.hmi_tokens.holder(request.headers.get("authorization"))
    if holder is None:  # the token is never logged or echoed
        raise HTTPException(401, "login required")
    return holder


@pictures_api.get("/pictures/{ident}.jpg", dependencies=[Depends(picture_reader)])
def picture_jpeg(ident: str, ctx: StationContext = Depends(station)) -> Response:
    """The annotated JPEG of a fail/uncertain result; 404 when it was evicted (or never existed). GET only: no
    CSRF token is needed, and nothing changes."""
    data = ctx.pictures.read(ident) if ctx.pictures is not None else None
    if data is None:
        raise HTTPException(404, f"picture {ident!r} is not kept (evicted by retention, or no such picture)")
    return Response(data, media_type="image/jpeg")
