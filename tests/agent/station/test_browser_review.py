"""The review page in a real browser (Debian's Chromium, headless, driven by Playwright), as a technician uses it:
five frames reviewed from the keyboard (accept, a box moved by mouse, a box drawn, no defect, reject), checked in the
learning queue afterwards; the editor's keys; "find the ..." (phrase grounding) boxes that need a class before saving;
the layout on a 1280x800 panel and on a phone. Screenshots go to $STATION_SCREENSHOTS when set
(docs/img/station-review*.png are made that way), else tmp."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from agent.capture.synthetic import SyntheticGenerator
from agent.capture.worker import Frame
from agent.config import QueueConfig
from agent.detections import Detections
from agent.detector.tasks import Region
from agent.learn.queue import LearningQueue
from agent.station.server import StationServer
from tests.agent.station.conftest import PASSWORDS, THRESHOLDS, make_station, station_config
from tests.agent.station.test_browser import CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium): "
                                "apt-get install -y chromium (.ci/run installs it when missing)")
FIRST_SCORES = [0.51, 0.47, 0.55, 0.43, 0.59]  # margins 0.01 ... 0.09: review order is entry 1, 2, 3, 4, 5
GENERATOR = SyntheticGenerator(seed=11, size=480, max_defects=2, defect_free_fraction=0.0)
FOUND_BOX = (100.0, 100.0, 220.0, 180.0)  # what the stand-in model grounds "hole" at


def suggested(index: int) -> tuple[Frame, Detections]:
    """Frame `index` with the model's boxes: the true defects, the first one scored close to its threshold."""
    shot = GENERATOR.frame(index)
    truth = shot.detections
    scores = [FIRST_SCORES[index]] + [0.85] * (len(truth) - 1)
    frame = Frame("line-1", 1000 + index, datetime(2025, 1, 1, 8, index, tzinfo=timezone.utc), shot.image)
    return frame, Detections(truth.xyxy, truth.class_id, scores, truth.class_names, truth.image_size)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, LearningQueue]]:
    """The station's URL over a queue of five frames to review."""
    queue = LearningQueue(tmp_path / "queue", QueueConfig(per_minute=100, band=0.2, golden_fraction=0.0))
    for index in range(5):
        frame, dets = suggested(index)
        assert queue.offer(frame, dets, THRESHOLDS, model="tiny@1").entry is not None
    made = make_station(tmp_path, station_config(port=0), queue=queue)
    made.backend.grounder = lambda frame, phrase: [Region(phrase, FOUND_BOX, 0.42)] if phrase == "hole" else []
    server = StationServer(made.app, made.app.state.station.config)
    server.start()
    try:
        yield server.url.rstrip("/"), queue
    finally:
        server.stop()
        queue.close()


@pytest.fixture
def page_at(served: tuple[str, LearningQueue]) -> Iterator[Page]:
    """A 1280x800 browser page on /review, logged in as the technician (through the login page and the live
    page's Review tab)."""
    url, _ = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url + "/login")
        page.fill("#name", "tech")
        page.fill("#password", PASSWORDS["tech"])
        page.click("#login-button")
        expect(page).to_have_url(url + "/")
        page.click("#review-tab")
        expect(page).to_have_url(url + "/review")
        wait_for_entry(page, 1)
        yield page
        browser.close()


def wait_for_entry(page: Page, entry_id: int | str) -> None:
    page.wait_for_selector(f'body[data-entry="{entry_id}"][data-busy="false"]')


def screen_of(page: Page, x: float, y: float) -> tuple[float, float]:
    """Frame pixel (x, y) -> the page's screen coordinates."""
    point = page.evaluate("([x, y]) => { const m = document.getElementById('canvas').getScreenCTM();"
                          " return [m.a * x + m.e, m.d * y + m.f]; }", [x, y])
    return float(point[0]), float(point[1])


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=8)
    page.mouse.up()


def boxes_on_page(page: Page) -> list[dict[str, Any]]:
    """The editor's boxes as drawn: kind (suggestion/found/label), label and frame coordinates, in the editor's
    order."""
    boxes: list[dict[str, Any]] = page.evaluate("""() => [...document.querySelectorAll('#canvas .box')].map((g) => {
        const r = g.querySelector('.box-body');
        const n = (a) => Number(r.getAttribute(a));
        const kind = ['suggestion', 'found'].find((k) => g.classList.contains(k)) || 'label';
        return {index: Number(g.dataset.index), kind,
                label: g.dataset.label, x1: n('x'), y1: n('y'), x2: n('x') + n('width'), y2: n('y') + n('height')};
    }).sort((a, b) => a.index - b.index)""")
    return boxes


def review_five_frames(page: Page, shots: Path) -> dict[str, Any]:
    """Accept, move a box by mouse, draw a box, no defect, reject; returns what was dragged and drawn."""
    assert [b["kind"] for b in boxes_on_page(page)] == ["suggestion", "suggestion"]
    page.keyboard.press("Space")  # entry 1: the suggestions as they are
    wait_for_entry(page, 2)
    first = boxes_on_page(page)[0]
    scale = float(page.evaluate("() => document.getElementById('canvas').getScreenCTM().a"))
    start = screen_of(page, (first["x1"] + first["x2"]) / 2, (first["y1"] + first["y2"]) / 2)
    drag(page, start, (start[0] - 60, start[1] - 45))  # entry 2: move the first box up and left
    assert [b["kind"] for b in boxes_on_page(page)] == ["label", "suggestion"]  # moved: now a label
    page.keyboard.press("Space")
    wait_for_entry(page, 3)
    page.keyboard.press("w")  # entry 3: draw a box, make it a hole
    drag(page, screen_of(page, 220, 300), screen_of(page, 320, 400))
    page.keyboard.press("2")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(shots / "station-review.png"))
    page.keyboard.press("Space")
    wait_for_entry(page, 4)
    page.keyboard.press("n")  # entry 4: a good frame
    wait_for_entry(page, 5)
    page.keyboard.press("x")  # entry 5: never train on it
    wait_for_entry(page, "")
    expect(page.locator("#stage-message")).to_contain_text("Every frame of this list is reviewed")
    return {"moved": first, "by": (-60 / scale, -45 / scale)}


def assert_reviews_in_the_queue(queue: LearningQueue, done: dict[str, Any]) -> None:
    entries = {entry.id: entry for entry in queue.list()}
    assert all(e.verified and e.reviewer == "tech" and e.reviewed_at is not None for e in entries.values())
    assert [entries[i].status for i in range(1, 6)] == ["labelled"] * 4 + ["rejected"]
    accepted = entries[1]
    assert accepted.labels is not None and accepted.labels.labels == accepted.detections.labels
    np.testing.assert_allclose(accepted.labels.xyxy, accepted.detections.xyxy, atol=0.01)
    moved = entries[2].labels
    assert moved is not None and moved.labels == entries[2].detections.labels
    dx, dy = done["by"]
    expected = [done["moved"]["x1"] + dx, done["moved"]["y1"] + dy, done["moved"]["x2"] + dx, done["moved"]["y2"] + dy]
    np.testing.assert_allclose(moved.xyxy[0], expected, atol=1.5)  # moved by about the dragged amount
    np.testing.assert_allclose(moved.xyxy[1], entries[2].detections.xyxy[1], atol=0.01)
    drawn = entries[3].labels
    assert drawn is not None and drawn.labels == [*entries[3].detections.labels, "hole"]
    np.testing.assert_allclose(drawn.xyxy[-1], [220, 300, 320, 400], atol=1.5)
    assert entries[4].labels is not None and len(entries[4].labels) == 0  # no defect
    assert entries[5].labels is None


def layout_fits(page: Page) -> dict[str, Any]:
    """Where the frame and the review buttons are, against the viewport and the page's width."""
    fits: dict[str, Any] = page.evaluate("""() => {
        const inView = (el) => { const r = el.getBoundingClientRect();
            return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight; };
        const needed = ['#stage', '#accept', '#no-defect', '#reject', '#draw', '#prev', '#next', '#filter'];
        return {sideways: document.documentElement.scrollWidth > innerWidth,
                hidden: needed.filter((s) => !inView(document.querySelector(s)))};
    }""")
    return fits


def test_review_five_frames_by_keyboard_and_mouse(page_at: Page, served: tuple[str, LearningQueue],
                                                  tmp_path: Path) -> None:
    shots = Path(os.environ.get("STATION_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = page_at
    assert layout_fits(page) == {"sideways": False, "hidden": []}
    assert page.evaluate("() => document.documentElement.scrollHeight <= innerHeight")  # nothing below the fold
    done = review_five_frames(page, shots)
    assert_reviews_in_the_queue(served[1], done)
    page.select_option("#filter", "all")
    wait_for_entry(page, 1)  # every entry, reviewed or not, most unsure first
    expect(page.locator("#entry-status")).to_have_text("labelled")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert layout_fits(page) == {"sideways": False, "hidden": []}
    page.screenshot(path=str(shots / "station-review-phone.png"))


def test_editor_keys(page_at: Page) -> None:
    page = page_at
    original = boxes_on_page(page)
    page.keyboard.press("Tab")  # select the first box; arrows move it, Shift+arrows resize it
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Shift+ArrowRight")
    moved = boxes_on_page(page)[0]
    step = 2  # a 480-pixel frame: 1/200 of it, rounded
    assert [moved[k] - original[0][k] for k in ("x1", "y1", "x2", "y2")] == [step, step, 2 * step, step]
    assert moved["kind"] == "label"
    page.keyboard.press("3")
    assert boxes_on_page(page)[0]["label"] == "stain"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.getElementById('canvas').dataset.selected") == "1"
    page.keyboard.press("Delete")
    assert len(boxes_on_page(page)) == 1
    for _ in range(5):
        page.keyboard.press("Control+z")  # delete, class, resize, move, move: back to the model's suggestions
    assert boxes_on_page(page) == original
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.keyboard.press("Escape")  # nothing selected: the arrows change frames
    page.keyboard.press("ArrowRight")
    wait_for_entry(page, 2)
    page.keyboard.press("ArrowLeft")
    wait_for_entry(page, 1)


def test_resize_by_a_corner_handle(page_at: Page) -> None:
    page = page_at
    box = boxes_on_page(page)[0]
    page.keyboard.press("Tab")
    corner = screen_of(page, box["x2"], box["y2"])
    drag(page, corner, (corner[0] + 30, corner[1] + 20))
    scale = float(page.evaluate("() => document.getElementById('canvas').getScreenCTM().a"))
    resized = boxes_on_page(page)[0]
    assert (resized["x1"], resized["y1"]) == (box["x1"], box["y1"])
    assert resized["x2"] - box["x2"] == pytest.approx(30 / scale, abs=1.5)
    assert resized["y2"] - box["y2"] == pytest.approx(20 / scale, abs=1.5)


def test_found_boxes_are_suggestions_until_the_technician_gives_them_a_class(
        page_at: Page, served: tuple[str, LearningQueue], tmp_path: Path) -> None:
    shots = Path(os.environ.get("STATION_SCREENSHOTS") or tmp_path)
    page = page_at
    page.fill("#find-phrase", "hole")
    page.press("#find-phrase", "Enter")
    expect(page.locator("#find-status")).to_contain_text('1 "hole" found')
    boxes = boxes_on_page(page)
    assert [b["kind"] for b in boxes] == ["suggestion", "suggestion", "found"] and boxes[2]["label"] == ""
    assert [boxes[2][k] for k in ("x1", "y1", "x2", "y2")] == list(FOUND_BOX)
    page.screenshot(path=str(shots / "station-review-find.png"))
    page.keyboard.press("Space")  # refused: a found box has no class yet
    expect(page.locator("#toast")).to_contain_text("1 found box(es) have no class yet")
    assert page.evaluate("() => document.body.dataset.entry") == "1"
    page.fill("#find-phrase", "crack")
    page.press("#find-phrase", "Enter")
    expect(page.locator("#find-status")).to_contain_text('No "crack" found on this frame.')
    assert [b["kind"] for b in boxes_on_page(page)] == ["suggestion", "suggestion"]  # replaced by the new answer
    page.keyboard.press("Control+z")  # the "hole" box is back
    page.click("#box-list li.found")
    page.keyboard.press("2")  # it is a hole: now a label like any other
    assert [(b["kind"], b["label"]) for b in boxes_on_page(page)][2] == ("label", "hole")
    page.keyboard.press("Space")
    wait_for_entry(page, 2)
    entry = next(e for e in served[1].list() if e.id == 1)
    assert entry.labels is not None and entry.labels.labels == [*entry.detections.labels, "hole"]
    np.testing.assert_allclose(entry.labels.xyxy[-1], FOUND_BOX, atol=0.01)
