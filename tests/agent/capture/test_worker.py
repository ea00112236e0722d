"""Capture workers: corrupt frames skipped, reconnects, bounded free-run queue, trigger mode, real video capture."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog.testing

from agent.capture.sources import FrameSource, Image, SourceError
from agent.capture.worker import CameraState, CaptureWorker, Frame, FrameQueue, as_bgr
from agent.config import CameraConfig
from tests.agent.capture.test_sources import _jpeg_bytes, _png_bytes, write_video

FAST = {"reconnect_min_s": 0.02, "reconnect_max_s": 0.1, "no_frame_timeout_s": 0.3, "read_timeout_s": 0.5}


def camera(source: str = "synthetic:size=64", **overrides: Any) -> CameraConfig:
    return CameraConfig(**{"name": "cam0", "source": source, "fps": 200.0, **FAST, **overrides})


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


class StatusLog:
    def __init__(self) -> None:
        self.states: list[CameraState] = []
        self.lock = threading.Lock()

    def __call__(self, state: CameraState) -> None:
        with self.lock:
            self.states.append(state)

    @property
    def statuses(self) -> list[str]:
        with self.lock:
            return [s.status for s in self.states]


class FlakySource(FrameSource):
    """Gives `good_frames` frames, then fails every read and every open until `revive()`."""

    def __init__(self, good_frames: int) -> None:
        super().__init__("fake://flaky")
        self.left = good_frames
        self.dead = False
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        if self.dead:
            raise SourceError("fake://flaky: device unplugged")

    def grab(self) -> bool:
        if self.left <= 0:
            self.dead = True
        if self.dead:
            raise SourceError("fake://flaky: read failed")
        self.left -= 1
        return True

    def retrieve(self) -> Image:
        return np.zeros((8, 8, 3), np.uint8)

    def revive(self, frames: int) -> None:
        self.left, self.dead = frames, False


@pytest.fixture
def started() -> Any:
    workers: list[CaptureWorker] = []

    def start(worker: CaptureWorker) -> CaptureWorker:
        workers.append(worker)
        worker.start()
        return worker

    yield start
    for worker in workers:
        worker.stop(timeout=5)


def test_corrupt_and_empty_files_are_counted_and_skipped(tmp_path: Path, started: Any) -> None:
    (tmp_path / "00-good.png").write_bytes(_png_bytes(50))
    (tmp_path / "01-garbage.png").write_bytes(b"\x00garbage" * 50)
    (tmp_path / "02-truncated.png").write_bytes(_png_bytes(60)[:-30])
    (tmp_path / "03-truncated.jpg").write_bytes(_jpeg_bytes()[:300])
    (tmp_path / "04-empty.jpg").write_bytes(b"")
    (tmp_path / "05-good.jpg").write_bytes(_jpeg_bytes())
    queue = FrameQueue()
    worker = started(CaptureWorker(camera(str(tmp_path), loop=False, queue_size=10), queue))
    assert wait_until(lambda: worker.status == "offline" and worker.counters.frames == 2)
    assert worker.counters.corrupt == 4
    frames = [queue.get(timeout=1), queue.get(timeout=1)]
    assert [f.frame_id for f in frames if f] == [0, 1]
    assert all(f is not None and f.image.shape[2] == 3 for f in frames)


def test_source_that_dies_and_comes_back_reconnects(started: Any) -> None:
    source = FlakySource(good_frames=3)
    log = StatusLog()
    worker = started(CaptureWorker(camera(), on_status=log, source=source))
    assert wait_until(lambda: worker.counters.open_failures >= 2)
    assert worker.status == "offline"
    source.revive(frames=1000)
    assert wait_until(lambda: worker.status == "online" and worker.counters.reconnects == 1)
    assert log.statuses[:3] == ["online", "offline", "online"]
    offline = log.states[1]
    assert "read failed" in offline.reason and offline.counters["frames"] == 3


def test_directory_renamed_away_and_back_goes_offline_then_online(tmp_path: Path, started: Any) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(_png_bytes(10 * i))
    log = StatusLog()
    worker = started(CaptureWorker(camera(str(folder)), on_status=log))
    assert wait_until(lambda: worker.status == "online")
    folder.rename(tmp_path / "away")
    assert wait_until(lambda: worker.status == "offline")
    frames_while_away = worker.counters.frames
    (tmp_path / "away").rename(folder)
    assert wait_until(lambda: worker.status == "online")
    assert worker.counters.reconnects >= 1
    assert wait_until(lambda: worker.counters.frames > frames_while_away)
    assert log.statuses[:3] == ["online", "offline", "online"]


def test_silent_source_hits_the_no_frame_timeout(tmp_path: Path, started: Any) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    log = StatusLog()
    worker = started(CaptureWorker(camera(str(empty)), on_status=log))
    assert wait_until(lambda: bool(log.states) and "no frame" in log.states[-1].reason)
    assert worker.status == "offline"
    (empty / "a.png").write_bytes(_png_bytes())
    assert wait_until(lambda: worker.status == "online")


def test_free_run_with_a_slow_consumer_drops_frames_and_stays_bounded(started: Any) -> None:
    queue = FrameQueue()
    worker = started(CaptureWorker(camera(fps=500.0, queue_size=3), queue))
    received: list[Frame] = []
    for _ in range(5):
        time.sleep(0.1)  # the consumer is far slower than capture
        assert queue.depth() <= 3
        frame = queue.get(timeout=2)
        assert frame is not None
        received.append(frame)
    assert worker.counters.dropped > 0
    assert worker.counters.frames - worker.counters.dropped - len(received) <= 3  # the rest waits in the queue
    ids = [f.frame_id for f in received]
    assert ids == sorted(ids) and ids[-1] - ids[0] > len(ids)  # latest frames win, old ones were skipped


def test_capture_is_paced_at_the_configured_fps(started: Any) -> None:
    worker = started(CaptureWorker(camera(fps=20.0, queue_size=100)))
    time.sleep(1.0)
    assert 1 <= worker.counters.frames <= 30  # about 20; an unpaced synthetic source would give thousands


def test_trigger_mode_tags_the_next_frame_with_the_part_and_queues_one_frame_per_trigger(started: Any) -> None:
    queue = FrameQueue()
    worker = started(CaptureWorker(camera(mode="trigger", fps=100.0, queue_size=5), queue))
    assert wait_until(lambda: worker.status == "online")
    time.sleep(0.05)
    assert queue.depth() == 0  # trigger mode inspects nothing on its own
    first = worker.trigger("P-001", expect="fail")
    assert (first.status, first.position) == ("accepted", 1)
    tagged = queue.get(timeout=2)
    assert tagged is not None and (tagged.part_id, tagged.expect, tagged.trigger) == ("P-001", "fail", 1)
    assert wait_until(lambda: worker.trigger("P-002").status == "accepted")
    second = queue.get(timeout=2)
    assert second is not None and (second.part_id, second.expect) == ("P-002", None)
    assert second.frame_id > tagged.frame_id
    time.sleep(0.05)
    assert queue.depth() == 0 and worker.counters.dropped == 0


def test_trigger_on_an_offline_camera_is_refused_as_busy(tmp_path: Path, started: Any) -> None:
    worker = started(CaptureWorker(camera(str(tmp_path / "missing"), mode="trigger")))
    assert wait_until(lambda: worker.status == "offline")
    answer = worker.trigger("P-9")
    assert answer.status == "busy" and "not online" in answer.reason


def test_a_free_running_camera_refuses_to_trigger() -> None:
    worker = CaptureWorker(camera(), source=FlakySource(good_frames=1))
    with pytest.raises(RuntimeError, match="not 'trigger'"):
        worker.trigger("P-1")


def test_the_frame_queue_never_evicts_a_triggered_frame() -> None:
    queue = FrameQueue()
    queue.add_camera("cam0", 2)
    now = datetime.now(timezone.utc)
    image = np.zeros((4, 4, 3), np.uint8)
    free = [Frame("cam0", i, now, image) for i in range(2)]
    triggered = [Frame("cam0", 10 + i, now, image, part_id=f"P-{i}", trigger=i + 1) for i in range(3)]
    assert [queue.put(f) for f in free] == [None, None]
    assert [queue.put(f) for f in triggered[:2]] == free  # untriggered frames make room, oldest first
    assert queue.put(triggered[2]) is None  # a slot of triggered frames grows instead of dropping a part
    assert [f.part_id for f in iter(lambda: queue.get(timeout=0), None)] == ["P-0", "P-1", "P-2"]


def test_disabled_camera_reports_disabled_and_never_opens() -> None:
    source = FlakySource(good_frames=10)
    log = StatusLog()
    worker = CaptureWorker(camera(enabled=False), on_status=log, source=source)
    worker.start()
    assert log.statuses == ["disabled"] and source.opens == 0
    assert worker.loop_alive(0.1)


def test_a_failing_status_callback_does_not_stop_capture(started: Any) -> None:
    def explode(state: CameraState) -> None:
        raise RuntimeError("broker gone")

    worker = started(CaptureWorker(camera(), on_status=explode))
    assert wait_until(lambda: worker.counters.frames > 5)


def test_real_opencv_capture_of_a_video_file(tmp_path: Path, started: Any) -> None:
    values = write_video(tmp_path / "line.avi", frames=6)
    queue = FrameQueue()
    worker = started(CaptureWorker(camera(str(tmp_path / "line.avi"), loop=False, queue_size=10), queue))
    assert wait_until(lambda: worker.status == "offline" and worker.counters.frames == 6)
    frames = [queue.get(timeout=1) for _ in values]
    assert [round(float(f.image.mean()) / 10) * 10 for f in frames if f] == values
    assert all(f is not None and f.camera == "cam0" and f.captured_at.tzinfo is not None for f in frames)


def test_loop_alive_tracks_the_thread(started: Any) -> None:
    worker = started(CaptureWorker(camera()))
    assert wait_until(lambda: worker.counters.frames > 0)
    assert worker.loop_alive(1.0)
    worker.stop(timeout=5)
    assert not worker._thread or not worker._thread.is_alive()


def test_frame_queue_is_fair_across_cameras() -> None:
    queue = FrameQueue()
    queue.add_camera("a", 5)
    queue.add_camera("b", 5)
    image = np.zeros((2, 2, 3), np.uint8)
    now = datetime.now(timezone.utc)
    for i in range(3):
        queue.put(Frame("a", i, now, image))
    queue.put(Frame("b", 0, now, image))
    batch = queue.get_batch(4, timeout=0.1, window_s=0.0)
    assert [(f.camera, f.frame_id) for f in batch] == [("a", 0), ("b", 0), ("a", 1), ("a", 2)]
    assert queue.get_batch(4, timeout=0.01, window_s=0.0) == []


def test_as_bgr_converts_grey_and_rejects_non_images() -> None:
    assert as_bgr(np.zeros((4, 4), np.uint8)).shape == (4, 4, 3)
    assert as_bgr(np.zeros((4, 4, 4), np.uint8)).shape == (4, 4, 3)
    for bad in [np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32), None]:
        with pytest.raises(ValueError):
            as_bgr(bad)


def test_corrupt_frame_from_a_live_source_is_counted(started: Any) -> None:
    class Glitchy(FlakySource):
        live = True
        n = 0

        def retrieve(self) -> Image:
            self.n += 1
            return np.zeros((0, 0, 3), np.uint8) if self.n % 2 else np.zeros((4, 4, 3), np.uint8)

    worker = started(CaptureWorker(camera(), source=Glitchy(good_frames=10**12)))
    assert wait_until(lambda: worker.counters.frames >= 3 and worker.counters.corrupt >= 3)


def test_a_flood_of_corrupt_frames_is_counted_in_full_but_logged_once_per_interval(started: Any) -> None:
    class Garbage(FlakySource):
        live = True

        def retrieve(self) -> Image:
            return np.zeros((0, 0, 3), np.uint8)

    with structlog.testing.capture_logs() as logs:
        worker = started(CaptureWorker(camera(no_frame_timeout_s=60.0), source=Garbage(good_frames=10**12)))
        assert wait_until(lambda: worker.counters.corrupt >= 500)
        worker.stop(timeout=5)
    lines = [entry for entry in logs if entry["event"] == "corrupt frame skipped"]
    assert len(lines) == 1, f"{len(lines)} log lines for {worker.counters.corrupt} corrupt frames"
    assert lines[0]["corrupt"] == 1 and "empty" in lines[0]["error"]


def test_a_worker_replacing_a_stopped_one_goes_on_with_its_frame_ids_counters_and_parts_in_flight(
        started: Any) -> None:
    queue = FrameQueue()
    old = started(CaptureWorker(camera(mode="trigger"), queue))
    assert wait_until(lambda: old.trigger("P-1").status == "accepted")
    first = queue.get(timeout=2)
    assert first is not None and first.part_id == "P-1"
    old.stop(reason="restarting: its config changed (reload)")
    queue.remove_camera("cam0")
    new = started(CaptureWorker(camera(mode="trigger", fps=100.0, trigger_queue=3), queue, previous=old))
    assert new.triggers is old.triggers and new.triggers is not None and new.triggers.capacity == 3
    assert new.triggers.find(first.trigger or 0) is not None  # P-1 still waits for its result
    assert new.counters.frames >= old.counters.frames > 0
    assert wait_until(lambda: new.trigger("P-2").status == "accepted")
    second = queue.get(timeout=2)
    assert second is not None and second.part_id == "P-2" and second.frame_id > first.frame_id


def test_stop_leaves_the_status_it_is_told_even_for_a_camera_that_never_ran(started: Any) -> None:
    log = StatusLog()
    worker = started(CaptureWorker(camera(), on_status=log))
    assert wait_until(lambda: worker.status == "online")
    worker.stop(status="retired", reason="removed from the config by a reload")
    assert (log.states[-1].status, log.states[-1].reason) == ("retired", "removed from the config by a reload")
    disabled_log = StatusLog()
    disabled = CaptureWorker(camera(enabled=False), on_status=disabled_log)
    disabled.start()
    disabled.stop()  # a plain stop (shutdown) leaves a disabled camera disabled
    disabled.stop(status="retired", reason="removed")
    assert disabled_log.statuses == ["disabled", "retired"]
