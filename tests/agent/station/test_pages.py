"""The pages: /login for everyone, / only with a session, /review for technicians; all their files come from the
package (no CDN)."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

from agent.station.pages import STATIC_DIR
from tests.agent.station.conftest import Station


def test_live_page_redirects_to_login_without_a_session(station: Station) -> None:
    response = station.client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_login_page_is_served_and_redirects_once_logged_in(station: Station) -> None:
    page = station.client.get("/login")
    assert page.status_code == 200 and 'id="login-form"' in page.text
    station.login("view")
    assert station.client.get("/login", follow_redirects=False).headers["location"] == "/"
    live = station.client.get("/")
    assert live.status_code == 200 and 'id="cameras"' in live.text


def test_the_review_page_is_for_technicians_and_linked_from_the_live_page(station: Station) -> None:
    assert station.client.get("/review", follow_redirects=False).headers["location"] == "/login"
    station.login("view")
    assert station.client.get("/review", follow_redirects=False).headers["location"] == "/"
    station.login("tech")
    review = station.client.get("/review")
    assert review.status_code == 200 and 'id="canvas"' in review.text
    assert 'href="/review"' in station.client.get("/").text


def test_pages_load_only_the_packages_own_files(station: Station) -> None:
    pages = [("view", "/login"), ("view", "/"), ("tech", "/review")]
    for user, page in pages:
        station.login(user)
        html = station.client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
        for asset in assets:
            if asset.startswith("/static/"):
                assert station.client.get(asset).status_code == 200, asset
    assert station.client.get("/static/editor.js").status_code == 200  # imported by review.js
    for file in STATIC_DIR.iterdir():
        assert not re.search(r"https?://", file.read_text()), f"{file.name} refers to another server"


def test_pages_have_a_mobile_viewport_and_no_inline_script(station: Station) -> None:
    for user, page in [("view", "/login"), ("view", "/"), ("tech", "/review")]:
        station.login(user)
        html = station.client.get(page).text
        assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None  # the CSP forbids inline scripts


def test_a_non_editable_install_ships_every_static_file() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["agent.station"]
    for file in STATIC_DIR.iterdir():
        assert any(fnmatch(f"static/{file.name}", p) for p in patterns), f"{file.name} is not in package-data"
