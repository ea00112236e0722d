"""The recalibration page in a real browser (Debian's Chromium, headless, driven by Playwright), as a technician uses
it. First over fake run processes (tests/agent/station/fake_run.py: progress and report files as the real run writes
them, no model): start a run, watch its progress, read its report, promote it and see the live page serve the new
version; a run the gate rejects, overridden with the typed phrase; a rollback; a cancelled run. Then (slow) the real
thing: `edge-inspect run` on the tiny model, a real `edge-inspect recalibrate` started from the page over verified
queue frames, promoted (or, as an untrained model rarely improves, overridden) and served by the daemon.
Screenshots go to $STATION_SCREENSHOTS when set (docs/img/station-runs.png is made that way), else tmp."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from agent.capture.synthetic import SyntheticGenerator
from agent.capture.worker import Frame
from agent.config import QueueConfig
from agent.learn.queue import LearningQueue
from agent.statedir import StateDir
from agent.station.app import create_app
from agent.station.audit import AuditLog
from agent.station.backend import CameraInfo, StaticBackend
from agent.station.live import LiveBoard
from agent.station.runs import RunControl
from agent.station.server import StationServer
from agent.store.model_store import ModelStore
from tests.agent.station.conftest import CLASSES, PASSWORDS, station_config, user_entry
from tests.agent.station.test_browser import CHROMIUM, run_cameras
from tests.agent.station.test_runs import fake_command
from tests.agent.store.helpers import new_store
from tests.agent.test_daemon import wait_until, web_ok, yaml_port
from tests.fixtures.broker import Broker
from tests.fixtures.daemon import DaemonProcess, write_config

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium): "
                                "apt-get install -y chromium (.ci/run installs it when missing)")



@dataclass
class Served:
    url: str
    control: RunControl
    store: ModelStore
    runs_dir: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A station whose backend reloads from a real model store, a synthetic camera feeding its live page, and fake
    run processes (6 training steps of 0.8 s) instead of `edge-inspect recalibrate`."""
    store = new_store(tmp_path)
    backend = StaticBackend(camera_infos={"cam0": CameraInfo("online")}, version="base",
                            config_file=tmp_path / "config.yaml", state_dir=tmp_path / "state",
                            on_reload=lambda: f"base+{store.current()}" if store.current() else "base")
    board = LiveBoard(recent=4)
    app = create_app(station_config(port=0), backend, board, AuditLog.in_state_dir(tmp_path / "state"))
    runs_dir = tmp_path / "state" / "recalibration"
    control = app.state.runs = RunControl(runs_dir, fake_command(runs_dir, "pass", steps=6, step_s=0.8))
    server = StationServer(app, app.state.station.config)
    server.start()
    stop = threading.Event()
    feeder = threading.Thread(target=run_cameras, args=(board, ["cam0"], stop), daemon=True)
    feeder.start()
    try:
        yield Served(server.url.rstrip("/"), control, store, runs_dir)
    finally:
        stop.set()
        feeder.join()
        server.stop()


def picture(page: Page, path: Path) -> None:
    """The whole page without the passing message (screenshot(style=...) cannot: the station's CSP refuses it)."""
    page.evaluate("() => { document.getElementById('toast').hidden = true; }")
    page.screenshot(path=str(path), full_page=True)


def open_runs_page(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.fill("#name", "tech")
    page.fill("#password", PASSWORDS["tech"])
    page.click("#login-button")
    expect(page).to_have_url(url + "/")
    go_to_runs_page(page)
    expect(page.locator("#run-state")).to_have_text("idle")


def go_to_runs_page(page: Page) -> None:
    """Through the live page's tab; the page's buttons work once it says it is ready."""
    page.click("#runs-tab")
    page.wait_for_url("**/runs")
    page.wait_for_selector('body[data-ready="true"]')


def run_and_watch(page: Page, peek: Path) -> None:
    """Start a run and see its stage, steps, loss and ETA move (pictured in `peek`), then its report."""
    page.click("#start-run")
    expect(page.locator("#run-state")).to_have_text("running")
    expect(page.locator("#step")).to_have_text(re.compile(r"^[1-5] / 6$"), timeout=20000)
    expect(page.locator("#stages li.now")).to_have_text("train")
    expect(page.locator("#loss")).to_have_text(re.compile(r"^\d+\.\d{4}$"))
    expect(page.locator("#eta")).to_have_text(re.compile(r"^\d+ s$"))
    assert page.evaluate("() => parseFloat(document.getElementById('bar-fill').style.width)") > 0
    picture(page, peek / "station-runs-progress.png")
    expect(page.locator("#run-state")).to_have_text("idle", timeout=20000)


def read_passed_report(page: Page) -> None:
    page.wait_for_selector('body[data-outcome="passed"]')
    expect(page.locator("#gate-decision")).to_contain_text("Passed (improvement)")
    expect(page.locator("#gate-interval")).to_contain_text("95% bootstrap interval [+0.021, +0.114]")
    expect(page.locator("#run-summary")).to_contain_text(
        "judged on 12 golden frames (boxes: scratch 7, hole 4, stain 5) on the torch-eager backend")
    expect(page.locator("#scores tbody tr")).to_have_count(2)
    expect(page.locator("#scores tbody tr").first).to_contain_text("+0.056")
    expect(page.locator("#per-class tbody tr")).to_have_count(3)
    expect(page.locator("#plots figure")).to_have_count(4)
    page.wait_for_function("() => [...document.querySelectorAll('#plots img')].every((i) => i.naturalWidth > 0)")
    expect(page.locator("#changed-summary")).to_have_text("2 of 12 golden frames change verdict: 2 fixed, 0 broken.")
    expect(page.locator("#changed figure").first).to_contain_text("queue entry 3 · truth fail")
    expect(page.locator("#changed figure .verdicts").first).to_have_text(re.compile(r"pass\s*→\s*fail\s*fixed"))
    page.wait_for_function("() => [...document.querySelectorAll('#changed img')].every((i) => i.naturalWidth > 0)")


def promote_and_see_it_live(page: Page, url: str, shots: Path) -> None:
    expect(page.locator("#serving-note")).to_have_text(
        "The run stored the candidate as v0001; the line serves it once you promote it.")
    expect(page.locator("#model")).to_have_text("model base")
    page.click("#promote")
    expect(page.locator("#serving-note")).to_have_text("The candidate is serving now as v0001.")
    expect(page.locator("#promote")).to_be_hidden()
    expect(page.locator("#model")).to_have_text("model base+v0001")
    expect(page.locator("#history tbody tr").first).to_contain_text("v0001")
    expect(page.locator("#history tbody tr").first.locator(".mark.serving")).to_be_visible()
    picture(page, shots / "station-runs.png")
    page.click("a.tab[href='/']")
    expect(page).to_have_url(url + "/")
    expect(page.locator("#model")).to_have_text("model base+v0001")
    go_to_runs_page(page)


def override_a_rejected_run(page: Page, served: Served) -> None:
    served.control.command = fake_command(served.runs_dir, "reject", steps=2, step_s=0.2)
    page.click("#start-run")
    page.wait_for_selector('body[data-outcome="rejected"]', timeout=20000)
    expect(page.locator("#promote")).to_be_hidden()
    phrase = page.locator("#phrase").inner_text()
    assert phrase.startswith("override ")
    page.fill("#override-confirm", "override it")
    page.fill("#override-reason", "the golden set predates the new lighting")
    page.click("#override-button")
    expect(page.locator("#run-error")).to_contain_text("type 'override")
    assert served.store.current() == "v0001"
    page.fill("#override-confirm", phrase)
    page.click("#override-button")
    expect(page.locator("#serving-note")).to_have_text("The candidate is serving now as v0002.")
    expect(page.locator("#history .mark.override")).to_be_visible()
    expect(page.locator("#model")).to_have_text("model base+v0002")


def roll_back(page: Page, served: Served) -> None:
    expect(page.locator("#rollback")).to_have_text("Roll back to v0001")
    page.once("dialog", lambda dialog: dialog.dismiss())  # asked first: nothing happens without a yes
    page.click("#rollback")
    page.wait_for_timeout(300)
    assert served.store.current() == "v0002"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#rollback")
    expect(page.locator("#model")).to_have_text("model base+v0001")
    assert served.store.current() == "v0001"


def cancel_a_run(page: Page, served: Served) -> None:
    served.control.command = fake_command(served.runs_dir, "hang", steps=3, step_s=0.2)
    page.click("#start-run")
    expect(page.locator("#step")).to_have_text(re.compile(r"^[12] / 3$"), timeout=15000)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-run")
    page.wait_for_selector('body[data-outcome="cancelled"]', timeout=15000)
    expect(page.locator("#run-state")).to_have_text("idle")
    expect(page.locator("#run-list .badge").first).to_have_text("cancelled")
    assert served.store.current() == "v0001"


def a_run_that_stopped_before_training(page: Page, served: Served) -> None:
    """The golden set was too small: the page says nothing was trained or judged, and offers nothing to promote."""
    served.control.command = fake_command(served.runs_dir, "too_small", steps=1, step_s=0.1)
    page.click("#start-run")
    page.wait_for_selector('body[data-outcome="golden_too_small"]', timeout=15000)
    expect(page.locator("#run-summary")).to_have_text(
        "Not trained: the run stopped before training (9 verified frames were ready) · "
        "not judged: 2 golden frames (boxes: scratch 2, hole 0, stain 1)")
    expect(page.locator("#gate-decision")).to_have_text("The run did not reach the gate.")
    expect(page.locator("#plots")).to_have_text("No plots: the run stopped before it evaluated anything.")
    box = page.locator("#plots .none").bounding_box()
    assert box is not None and box["height"] < 30, box  # one line across the panel, not wrapped in a plot's cell
    expect(page.locator("#changed")).to_have_text("No verdicts: the run stopped before it judged the golden frames.")
    expect(page.locator("#promote")).to_be_hidden()
    expect(page.locator("#outcome")).to_contain_text("golden too small")
    assert served.store.current() == "v0001"


def test_recalibrate_promote_override_and_roll_back_from_the_page(served: Served, tmp_path: Path) -> None:
    shots = Path(os.environ.get("STATION_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        open_runs_page(page, served.url)
        run_and_watch(page, tmp_path)
        read_passed_report(page)
        promote_and_see_it_live(page, served.url, shots)
        override_a_rejected_run(page, served)
        roll_back(page, served)
        cancel_a_run(page, served)
        a_run_that_stopped_before_training(page, served)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(300)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        picture(page, tmp_path / "station-runs-phone.png")
        browser.close()


# ----- the real thing: a daemon, its station, `edge-inspect recalibrate` started from the page ----------------------
def fill_verified_queue(state_dir: Path, training: int = 4, golden: int = 3) -> None:
    """Queue frames whose boxes a technician verified (their true defects): `training` ones, then `golden` ones."""
    generator = SyntheticGenerator(seed=5, size=128, max_defects=2, defect_free_fraction=0.0)
    queue = LearningQueue(StateDir(state_dir).queue, QueueConfig(per_minute=1000, per_hour=1000, per_day=1000))
    for index, shot in enumerate(generator.frames(training + golden)):
        frame = Frame("cam0", index, datetime.now(timezone.utc), shot.image)
        nothing = shot.detections[np.zeros(len(shot.detections), dtype=bool)]  # the model saw nothing there
        entry = queue.offer(frame, nothing, {c: 0.5 for c in CLASSES}, flagged=True).entry
        assert entry is not None
        queue.set_status(entry.id, "labelled", shot.detections, reviewer="tech")
        queue.set_golden(entry.id, index >= training)
    queue.close()


@pytest.fixture
def daemon_station(tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker) -> Iterator[tuple[str, DaemonProcess]]:
    """`edge-inspect run` on the tiny model with its station, over a queue of verified frames."""
    config = write_config(
        tmp_path, tiny_model_dir, mosquitto, cameras=[{"name": "cam0", "source": "synthetic:seed=1,size=128",
                                                       "fps": 2}],
        station={"users": [user_entry("tech", "technician")]},
        recalibration={"publish_events": False, "min_golden_per_class": 0, "bootstrap_resamples": 50, "epochs": 2,
                       "batch_size": 2, "max_minutes": 5})
    fill_verified_queue(tmp_path / "state")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    url = f"http://127.0.0.1:{yaml_port(config)}"
    try:
        with httpx.Client(base_url=url, timeout=10) as web:
            wait_until(lambda: web_ok(web, "/readyz"), timeout_s=120, what="station /readyz", log=daemon.log_tail)
        yield url, daemon
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        if daemon.alive():
            daemon.kill()


@pytest.mark.slow
def test_a_real_recalibration_started_from_the_page_is_served_after_promotion(
        daemon_station: tuple[str, DaemonProcess], tmp_path: Path) -> None:
    url, daemon = daemon_station
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        open_runs_page(page, url)
        page.click("#start-run")
        expect(page.locator("#run-state")).to_have_text("running")
        expect(page.locator("#stages li.now")).to_have_text(re.compile(r"^(snapshot|replay|train|evaluate)$"),
                                                             timeout=60000)
        page.wait_for_selector('body[data-outcome="passed"], body[data-outcome="rejected"]', timeout=300000)
        expect(page.locator("#scores tbody tr")).to_have_count(2)
        page.wait_for_function("() => [...document.querySelectorAll('#plots img')].every((i) => i.naturalWidth > 0)")
        picture(page, tmp_path / "station-runs-real.png")
        if page.evaluate("() => document.body.dataset.outcome") == "passed":
            page.click("#promote")
        else:  # an untrained tiny model rarely improves: the technician overrides the gate, as the page allows
            page.fill("#override-confirm", page.locator("#phrase").inner_text())
            page.fill("#override-reason", "end-to-end test of the station")
            page.click("#override-button")
        expect(page.locator("#serving-note")).to_have_text("The candidate is serving now as v0001.", timeout=60000)
        page.click("a.tab[href='/']")
        expect(page.locator("#model")).to_have_text("model model+v0001", timeout=15000)
        browser.close()
    assert any(r.get("msg") == "reloaded" for r in daemon.log_records()), daemon.log_tail()
