"""The pages in a real browser (Debian's Chromium, headless, driven by Playwright): log in through the login page
and watch the live page follow frames fed into the LiveBoard without a reload; it must fit a 1280x800 panel and a
phone. Screenshots go to $STATION_SCREENSHOTS when set (docs/img/station-*.png are made that way), else tmp."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from agent.capture.synthetic import SyntheticGenerator
from agent.decide import Thresholds, decide
from agent.detections import Detections
from agent.station.backend import CameraInfo
from agent.station.live import LiveBoard
from agent.station.server import StationServer
from tests.agent.station.conftest import PASSWORDS, make_station, station_config

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium): "
                                "apt-get install -y chromium (.ci/run installs it when missing)")


def run_cameras(board: LiveBoard, names: list[str], stop: threading.Event) -> None:
    """Synthetic 10 fps cameras: frames with defects, scored at random, decided with the default thresholds."""
    rng = np.random.default_rng(3)
    thresholds = Thresholds({}, default=0.5, band=0.1)
    generators = {name: iter(SyntheticGenerator(seed=i, size=320, max_defects=2)) for i, name in enumerate(names)}
    frame_id = 0
    while not stop.wait(0.1):
        frame_id += 1
        for name, frames in generators.items():
            shot = next(frames)
            truth = shot.detections
            scored = Detections(truth.xyxy, truth.class_id, rng.uniform(0.35, 0.95, len(truth)), truth.class_names,
                                truth.image_size)
            verdict = decide(scored, thresholds).verdict
            board.update(name, shot.image, scored, verdict, frame_id, datetime.now(timezone.utc))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, threading.Event]]:
    """The station's URL, with two synthetic cameras feeding its board until the event is set."""
    made = make_station(tmp_path, station_config(port=0))
    made.backend.camera_infos["cam1"] = CameraInfo("online", "", {"frames": 0, "dropped": 0})
    server = StationServer(made.app, made.app.state.station.config)
    server.start()
    stop = threading.Event()
    feeder = threading.Thread(target=run_cameras, args=(made.board, ["cam0", "cam1"], stop), daemon=True)
    feeder.start()
    try:
        yield server.url.rstrip("/"), stop
    finally:
        stop.set()
        feeder.join()
        server.stop()


def shown_seq(page: Page, camera: str) -> int:
    return int(page.evaluate(f"() => Number(document.querySelector('[data-camera={camera}]')?.dataset.shownSeq || 0)"))


def log_in(page: Page, url: str, shots: Path) -> None:
    """A wrong password first (the page says so), then the right one; the live page replaces the login page."""
    page.goto(url + "/")
    expect(page).to_have_url(url + "/login")
    page.fill("#name", "tech")
    page.fill("#password", "wrong password")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")
    page.goto(url + "/login")  # a clean form for the picture
    page.fill("#name", "tech")
    page.fill("#password", PASSWORDS["tech"])
    page.screenshot(path=str(shots / "station-login.png"))
    page.click("#login-button")
    expect(page).to_have_url(url + "/")


def watch_frames(page: Page) -> None:
    """New frames appear without a reload, with their verdict and counters; the pictures come with the stream."""
    page.evaluate("() => { window.notReloaded = true; }")
    frame_requests: list[str] = []
    page.on("request", lambda request: frame_requests.append(request.url) if "frame.jpg" in request.url else None)
    card = page.locator("section.camera[data-camera=cam0]")
    expect(card.locator(".status")).to_have_text("online")
    expect(page.locator("#user")).to_have_text("tech (technician)")
    page.wait_for_function("() => Number(document.querySelector('[data-camera=cam0]')?.dataset.shownSeq) > 0")
    first = shown_seq(page, "cam0")
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-camera=cam0]').dataset.shownSeq) >= {first + 4}", timeout=5000)
    assert page.evaluate("() => window.notReloaded") is True
    assert frame_requests == [], "the live page fetched pictures the stream had already sent"
    # (between two frames the element briefly has no decoded picture while the next one loads: wait, don't sample)
    page.wait_for_function("() => document.querySelector('[data-camera=cam0] .frame-img').naturalWidth === 320")
    expect(card.locator(".verdict")).to_have_text(re.compile(r"^(pass|fail|uncertain)$"))
    assert int(card.locator(".stat-fail").inner_text()) + int(card.locator(".stat-pass").inner_text()) > 0
    expect(card.locator(".recent .thumb").first).to_be_visible()


def fits_and_pictured(page: Page, shots: Path, stop_cameras: threading.Event) -> None:
    """No sideways scrolling on the 1280x800 panel nor on a phone; pictures of both, on still cameras."""
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    stop_cameras.set()  # a still picture: every recent thumbnail loaded, none evicted meanwhile
    page.wait_for_timeout(600)
    page.wait_for_function("() => [...document.querySelectorAll('.recent img')].every((i) => i.naturalWidth)")
    page.screenshot(path=str(shots / "station-live.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(shots / "station-live-phone.png"))
    frame_is_shown_whole_whatever_its_shape(page)


def frame_is_shown_whole_whatever_its_shape(page: Page) -> None:
    """A tall frame (a line camera, a 1024x1040 GenICam sensor, the 128 px square demo) is scaled into the frame box,
    never cropped: the picture's box is the frame's box and object-fit: contain does the rest."""
    boxes = page.evaluate("""async () => {
        const img = document.querySelector('[data-camera=cam0] .frame-img');
        const canvas = Object.assign(document.createElement('canvas'), {width: 100, height: 400});
        img.src = canvas.toDataURL();
        await img.decode();
        const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
        return [box(img.parentElement), box(img)];
    }""")
    assert boxes[0] == boxes[1], boxes


def test_log_in_and_watch_the_live_page_update(served: tuple[str, threading.Event], tmp_path: Path) -> None:
    url, stop_cameras = served
    shots = Path(os.environ.get("STATION_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        log_in(page, url, shots)
        watch_frames(page)
        fits_and_pictured(page, shots, stop_cameras)
        page.click("#logout")
        expect(page).to_have_url(url + "/login")
        browser.close()
