"""The live board: cheap updates, lazy rate-limited JPEG encoding, verdict counters, fps, recent fail frames."""

from __future__ import annotations

import base64
import itertools
import threading
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest

from agent.station import live
from agent.station.live import MAX_WIDTH, THUMB_WIDTH, LiveBoard, encode_annotated, shrunk
from tests.agent.station.conftest import detections, feed


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = live.encode_annotated

    def counting(*args: object) -> bytes:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(live, "encode_annotated", counting)
    return calls


def test_a_camera_without_frames_has_no_state() -> None:
    board = LiveBoard()
    assert board.state("cam0") is None and board.jpeg("cam0") is None and board.recent("cam0") == []
    assert board.seq("cam0") == 0 and board.cameras() == []


def test_update_records_frame_boxes_verdict_and_counters() -> None:
    board = LiveBoard(max_show_hz=1e9)
    feed(board, verdict="pass", frame_id=1, labels=())
    feed(board, verdict="fail", frame_id=2, labels=("scratch", "hole"))
    state = board.state("cam0")
    assert state is not None
    assert (state["seq"], state["frame_id"], state["verdict"]) == (2, 2, "fail")
    assert [b["label"] for b in state["boxes"]] == ["scratch", "hole"]
    assert state["counts"] == {"pass": 1, "fail": 1, "uncertain": 0}
    assert state["image_size"] == [320, 240] and state["captured_at"].endswith("Z")


def test_update_never_encodes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_encodes(monkeypatch)
    board = LiveBoard()
    for i in range(50):
        feed(board, frame_id=i)
    assert calls == []


def test_fps_is_measured_and_drops_to_zero_when_frames_stop() -> None:
    clock = FakeClock()
    board = LiveBoard(clock=clock)
    for i in range(11):
        feed(board, frame_id=i)
        clock.now += 0.1
    state = board.state("cam0")
    assert state is not None and state["fps"] == pytest.approx(10.0)
    clock.now += 10
    state = board.state("cam0")
    assert state is not None and state["fps"] == 0.0


def test_the_shown_frame_changes_at_most_max_show_hz_and_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_encodes(monkeypatch)
    clock = FakeClock()
    board = LiveBoard(max_show_hz=4, clock=clock)
    feed(board, frame_id=1)
    first = board.jpeg("cam0")
    assert first is not None and first[:2] == b"\xff\xd8"
    assert board.jpeg("cam0") is first and len(calls) == 1  # same frame: encoded once
    clock.now += 0.1
    feed(board, frame_id=2)
    state = board.state("cam0")
    assert state is not None and (state["seq"], state["frame_id"]) == (1, 1)  # too soon: frame 1 stays shown
    assert board.jpeg("cam0") is first and len(calls) == 1
    clock.now += 0.2  # no new frame, but the newer one becomes shown when a viewer looks
    assert board.seq("cam0") == 2
    state = board.state("cam0")
    assert state is not None and (state["seq"], state["frame_id"], state["counts"]["fail"]) == (2, 2, 2)
    assert board.jpeg("cam0") != first and len(calls) == 2


def test_a_page_gets_the_picture_its_text_describes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    board = LiveBoard(max_show_hz=4, clock=clock)
    feed(board, frame_id=1, labels=("scratch",))
    described = board.state("cam0")
    clock.now += 1
    feed(board, frame_id=2, labels=())
    assert described is not None and board.seq("cam0") == 2
    older, newest = board.jpeg("cam0", described["seq"]), board.jpeg("cam0")
    assert older != newest and older == board.jpeg("cam0", 1) and board.jpeg("cam0", 99) == newest


def test_update_is_not_held_up_while_a_frame_is_encoded(monkeypatch: pytest.MonkeyPatch) -> None:
    board = LiveBoard()
    feed(board, frame_id=1)
    entered, release = threading.Event(), threading.Event()

    def slow_encode(*_args: object) -> bytes:
        entered.set()
        release.wait(5)
        return b"\xff\xd8"

    monkeypatch.setattr(live, "encode_annotated", slow_encode)
    viewer = threading.Thread(target=board.jpeg, args=("cam0",))
    viewer.start()
    assert entered.wait(5)
    feed(board, frame_id=2)  # would deadlock here if update waited for the encoder
    assert board._cameras["cam0"].seq == 2
    release.set()
    viewer.join()


def test_encoded_frame_shows_the_boxes_and_is_scaled_down_when_wide() -> None:
    image = np.zeros((1080, 1920, 3), dtype=np.uint8)
    data = encode_annotated(image, detections(["scratch"], [0.9], size=(1920, 1080)))
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    assert decoded.shape == (720, MAX_WIDTH, 3)
    assert decoded.max() > 100  # the drawn box (the frame itself is black)


def test_scaling_down_keeps_a_box_edge_as_area_averaging_does() -> None:
    for width, height, to in ((256, 256, THUMB_WIDTH), (1024, 1040, THUMB_WIDTH), (2448, 2048, THUMB_WIDTH),
                              (1920, 1080, MAX_WIDTH)):
        image = np.zeros((height, width, 3), dtype=np.uint8)
        edge = max(1, round(min(height, width) / 300))  # agent/annotate.py's box line width for this frame
        image[:, width // 2 + 1:width // 2 + 1 + edge] = 255
        small = shrunk(image, to)
        assert small.shape == (round(height * to / width), to, 3)
        area = cv2.resize(image, small.shape[1::-1], interpolation=cv2.INTER_AREA)  # the reference it replaces
        assert abs(int(small.sum()) - int(area.sum())) < 0.15 * area.sum(), (width, to)  # the edge keeps its weight
        assert small.max() >= 0.5 * area.max(), (width, to)  # and is not aliased away
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    assert shrunk(image, 240) is image  # narrow enough already: untouched


def test_recent_keeps_the_last_fail_and_uncertain_frames_newest_first() -> None:
    board = LiveBoard(recent=3)
    verdicts = ["fail", "pass", "uncertain", "fail", "pass", "fail"]
    for i, verdict in enumerate(verdicts):
        feed(board, verdict=verdict, frame_id=i)
    items = board.recent("cam0")
    assert [(r["frame_id"], r["verdict"]) for r in items] == [(5, "fail"), (3, "fail"), (2, "uncertain")]
    assert board.recent_jpeg("cam0", items[0]["id"]) is not None
    assert board.recent_jpeg("cam0", 1) is None  # evicted
    state = board.state("cam0")
    assert state is not None and state["newest_recent"] == items[0]["id"]


def test_a_recent_frame_is_encoded_once_then_the_raw_image_is_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_encodes(monkeypatch)
    board = LiveBoard(recent=2)
    feed(board, verdict="fail")
    ident = board.recent("cam0")[0]["id"]
    data = board.recent_jpeg("cam0", ident)
    assert board.recent_jpeg("cam0", ident) == data and len(calls) == 1
    shot = board._cameras["cam0"].recent[0][1]
    assert shot.image is None


def test_recent_frames_carry_a_small_thumbnail_inline_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_encodes(monkeypatch)
    board = LiveBoard(recent=2)
    feed(board, verdict="fail")
    first = board.recent("cam0", thumbnails=True)[0]["thumbnail"]
    assert first.startswith("data:image/jpeg;base64,")
    thumb = cv2.imdecode(np.frombuffer(base64.b64decode(first.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert thumb is not None and thumb.shape[1] <= THUMB_WIDTH
    assert board.recent("cam0", thumbnails=True)[0]["thumbnail"] == first and len(calls) == 1
    assert "thumbnail" not in board.recent("cam0")[0]  # only when asked (the list alone stays cheap)


def test_a_thumbnail_is_made_from_the_full_jpeg_once_the_raw_image_is_gone() -> None:
    board = LiveBoard(recent=2)
    feed(board, verdict="fail")
    ident = board.recent("cam0")[0]["id"]
    assert board.recent_jpeg("cam0", ident) is not None  # encodes the full picture and lets the raw image go
    thumbnail = board.recent("cam0", thumbnails=True)[0]["thumbnail"]
    assert thumbnail is not None and thumbnail.startswith("data:image/jpeg;base64,")


def test_no_recent_frames_when_disabled() -> None:
    board = LiveBoard(recent=0)
    feed(board, verdict="fail")
    assert board.recent("cam0") == []


def test_concurrent_updates_and_viewers() -> None:
    ticks = itertools.count()  # a clock that moves a second per look: every update is shown, whatever the load
    board = LiveBoard(max_show_hz=1000, clock=lambda: float(next(ticks)))
    stop = threading.Event()
    errors: list[BaseException] = []

    def view() -> None:
        try:
            while not stop.is_set():
                board.jpeg("cam0")
                board.state("cam0")
                for item in board.recent("cam0"):
                    board.recent_jpeg("cam0", item["id"])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    viewers = [threading.Thread(target=view) for _ in range(3)]
    for thread in viewers:
        thread.start()
    image = np.zeros((240, 320, 3), dtype=np.uint8)
    for i in range(300):
        board.update("cam0", image, detections(["hole"], [0.5]), "uncertain", i, datetime.now(timezone.utc))
    stop.set()
    for thread in viewers:
        thread.join()
    assert errors == []
    assert board.seq("cam0") == 300


def test_a_fast_line_announces_a_new_recent_frame_at_most_every_refresh_interval() -> None:
    clock = FakeClock()
    board = LiveBoard(recent=8, max_show_hz=4, clock=clock)
    feed(board, frame_id=1)  # shown at once
    feed(board, frame_id=2)  # newer than the shown frame: the line is running
    first = board.state("cam0")
    assert first is not None and first["newest_recent"] == board.recent("cam0")[0]["id"]
    clock.now += 0.3
    feed(board, frame_id=3)
    feed(board, frame_id=4)
    held = board.state("cam0")
    assert held is not None and held["frame_id"] == 3 and held["newest_recent"] == first["newest_recent"]
    clock.now += live.RECENT_REFRESH_S
    feed(board, frame_id=5)
    feed(board, frame_id=6)
    later = board.state("cam0")
    assert later is not None and later["newest_recent"] == board.recent("cam0")[0]["id"]


def test_a_stopped_line_holds_no_recent_frame_back() -> None:
    clock = FakeClock()
    board = LiveBoard(recent=8, max_show_hz=4, clock=clock)
    feed(board, frame_id=1)
    board.state("cam0")
    clock.now += 0.3
    feed(board, frame_id=2)
    feed(board, frame_id=3)  # the last frame: the line stops here
    clock.now += 0.3  # the last frame becomes the shown one; nothing newer will come to carry the news
    state = board.state("cam0")
    assert state is not None and state["frame_id"] == 3
    assert state["newest_recent"] == board.recent("cam0")[0]["id"]


def test_a_reload_forgets_removed_cameras_and_resizes_the_recent_frames_kept() -> None:
    board = LiveBoard(recent=3)
    for frame_id in range(1, 5):
        feed(board, "cam0", "fail", frame_id)
    feed(board, "gone", "fail", 1)
    board.forget("gone")
    assert board.cameras() == ["cam0"] and board.state("gone") is None
    assert [r["frame_id"] for r in board.recent("cam0")] == [4, 3, 2]
    board.set_recent(2)
    assert [r["frame_id"] for r in board.recent("cam0")] == [4, 3]  # the newest stay
    feed(board, "cam0", "uncertain", 5)
    feed(board, "new", "fail", 1)
    assert [r["frame_id"] for r in board.recent("cam0")] == [5, 4] and len(board.recent("new")) == 1
