"""The frame queue as cameras come and go: a removed camera's frames already queued are still handed out, a camera
added back takes up its slot again; nothing queued is lost."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from agent.capture.frames import Frame, FrameQueue

IMAGE = np.zeros((4, 4, 3), np.uint8)


def frame(camera: str, frame_id: int) -> Frame:
    return Frame(camera, frame_id, datetime.now(timezone.utc), IMAGE)


def drain(queue: FrameQueue) -> list[tuple[str, int]]:
    return [(f.camera, f.frame_id) for f in iter(lambda: queue.get(timeout=0), None)]


def test_a_removed_camera_hands_out_what_it_queued_refuses_later_frames_and_then_its_slot_goes() -> None:
    queue = FrameQueue()
    queue.add_camera("a", 5)
    queue.add_camera("b", 5)
    for f in (frame("a", 0), frame("a", 1), frame("b", 0)):
        assert queue.put(f) is None
    queue.remove_camera("a")
    late = frame("a", 2)
    assert queue.put(late) is late  # a stopping worker's last frame: refused, the worker counts it as dropped
    assert drain(queue) == [("a", 0), ("b", 0), ("a", 1)]
    assert queue.put(frame("a", 3)) is not None and queue.depth() == 0  # the slot is gone
    queue.remove_camera("a")  # removing twice, or an unknown camera, is harmless
    queue.remove_camera("nobody")
    queue.add_camera("a", 5)
    assert queue.put(frame("a", 4)) is None and drain(queue) == [("a", 4)]


def test_a_camera_restarted_while_its_frames_wait_keeps_them_first_and_takes_its_new_size() -> None:
    queue = FrameQueue()
    queue.add_camera("a", 5)
    queue.put(frame("a", 0))
    queue.remove_camera("a")
    queue.add_camera("a", 2)  # the restarted worker attaches before the old frame was taken
    assert queue.put(frame("a", 1)) is None
    evicted = queue.put(frame("a", 2))
    assert evicted is not None and evicted.frame_id == 0  # the new size applies: oldest untriggered goes
    assert drain(queue) == [("a", 1), ("a", 2)]
    with pytest.raises(ValueError, match="already attached"):
        queue.add_camera("a", 2)
