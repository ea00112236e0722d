"""The station's pages: /login (open to all), the live page / (login first) and the review page /review
(technicians; a viewer is sent to the live page). Their HTML, CSS and JS are the package's own files under static/
(no CDN: the box is offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from agent.station.guards import StationContext, session_of, station

STATIC_DIR = Path(__file__).resolve().parent / "static"
NO_STORE = {"Cache-Control": "no-store"}
pages = APIRouter(include_in_schema=False)


@pages.get("/login")
def login_page(request: Request, ctx: StationContext = Depends(station)) -> Response:
    if session_of(request, ctx) is not None:
        return RedirectResponse("/", status_code=303)
    return FileResponse(STATIC_DIR / "login.html", headers=NO_STORE)


@pages.get("/")
def live_page(request: Request, ctx: StationContext = Depends(station)) -> Response:
    if session_of(request, ctx) is None:
        return RedirectResponse("/login", status_code=303)
    return FileResponse(STATIC_DIR / "live.html", headers=NO_STORE)


@pages.get("/review")
def review_page(request: Request, ctx: StationContext = Depends(station)) -> Response:
    return technician_page(request, ctx, "review.html")


def technician_page(request: Request, ctx: StationContext, html: str) -> Response:
    """A technician's page: anonymous visitors go to /login, viewers back to the live page."""
    session = session_of(request, ctx)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    if session.role != "technician":
        return RedirectResponse("/", status_code=303)
    return FileResponse(STATIC_DIR / html, headers=NO_STORE)
