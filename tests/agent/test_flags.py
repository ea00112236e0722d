"""`cmd/flag` without a broker: which inspected parts the box remembers (count and memory limits), and what a flag on
each kind of part does to a real learning queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.control.commands import CommandError, FlagCommand
from agent.decide import Thresholds, decide
from agent.detections import Detections
from agent.flags import FlagDesk, RecentParts
from agent.inspected import Inspected
from agent.learn.queue import LearningQueue
from tests.agent.learn.helpers import CLASSES, config, frame, unsure

THRESHOLDS = Thresholds({"scratch": 0.5}, band=0.1)
FRAME_BYTES = 64 * 64 * 3


def inspected(index: int, part_id: str | None, detections: Detections | None = None, camera: str = "gate") -> Inspected:
    dets = detections if detections is not None else Detections.empty(CLASSES, (64, 64))
    return Inspected(frame(index, camera, part_id=part_id), dets, decide(dets, THRESHOLDS), 1.0, "m@1", THRESHOLDS)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[FlagDesk, RecentParts, LearningQueue, set[tuple[str, str]]]]:
    queue = LearningQueue(tmp_path / "queue", config(samplers=["flagged-miss"]))
    parts = RecentParts(per_camera=10, max_bytes=10 * FRAME_BYTES)
    in_flight: set[tuple[str, str]] = set()
    yield FlagDesk(parts, queue, lambda: {"gate"}, lambda c, p: (c, p) in in_flight), parts, queue, in_flight
    queue.close()


def flag(desk: FlagDesk, part_id: str, camera: str = "gate", reason: str | None = None) -> dict[str, Any]:
    return desk.flag(FlagCommand(camera=camera, part_id=part_id, reason=reason))


def test_parts_are_remembered_per_camera_up_to_their_count_and_frames_up_to_their_bytes() -> None:
    parts = RecentParts(per_camera=3, max_bytes=2 * FRAME_BYTES)
    for index in range(4):
        parts.note(inspected(index, f"P-{index}"))
    parts.note(inspected(9, None))  # a free-running frame has no part to flag
    parts.note(inspected(10, "Q-1", camera="dock"))
    assert parts.find("gate", "P-0") is None and parts.cameras() == {"gate", "dock"}
    held = {p: parts.find("gate", p).item is not None for p in ("P-1", "P-2", "P-3")}
    assert held == {"P-1": False, "P-2": False, "P-3": True} and parts.find("dock", "Q-1").item is not None
    assert parts.held_bytes() == 2 * FRAME_BYTES
    failed = unsure(0.95)
    parts.note(inspected(11, "P-4", failed))  # a fail needs no frame: the box agreed already
    assert parts.find("gate", "P-4").item is None and parts.held_bytes() == 2 * FRAME_BYTES
    parts.note(inspected(12, "P-3"))  # inspected again: the newest inspection counts
    assert parts.find("gate", "P-3").frame_id == 12 and parts.held_bytes() == 2 * FRAME_BYTES
    parts.resize(per_camera=1, max_bytes=0)
    assert parts.find("gate", "P-4") is None and parts.find("gate", "P-3").item is None and parts.held_bytes() == 0


def test_a_flagged_pass_is_queued_as_a_miss_with_the_lines_reason_and_a_second_flag_adds_to_it(desk) -> None:
    flags, parts, queue, _ = desk
    parts.note(inspected(1, "P-1"))
    reply = flag(flags, "P-1", reason="leak test failed")
    assert reply == {"camera": "gate", "part_id": "P-1", "found": True, "frame_id": 1, "verdict": "pass",
                     "queued": True, "entry": reply["entry"]}
    entry = queue.get(reply["entry"])
    assert entry.part_id == "P-1" and entry.reason == (
        "flagged-miss: the line flagged this part as bad (leak test failed) but the box said pass")
    assert (queue.image(entry.id) == frame(1, part_id="P-1").image).all()  # the frame as inspected, lossless
    assert parts.find("gate", "P-1").item is None  # in the queue now: no longer held in memory
    again = flag(flags, "P-1", reason="confirmed at rework")
    assert again["already_queued"] and again["entry"] == entry.id and queue.depth() == 1
    assert queue.get(entry.id).reason.endswith("; flagged by the line: confirmed at rework")
    queue.purge(ids=[entry.id])  # reviewed away meanwhile: its frame is neither queued nor held any more
    with pytest.raises(CommandError, match="no longer held"):
        flag(flags, "P-1")


def test_an_uncertain_part_is_a_miss_too_a_failed_one_is_not(desk) -> None:
    flags, parts, queue, _ = desk
    parts.note(inspected(1, "U-1", unsure(0.55)))  # above its threshold but within the band: uncertain
    parts.note(inspected(2, "F-1", unsure(0.9)))
    reply = flag(flags, "U-1")
    assert reply["verdict"] == "uncertain" and reply["queued"], reply
    assert "the box said uncertain" in queue.get(reply["entry"]).reason
    failed = flag(flags, "F-1")
    assert failed["verdict"] == "fail" and not failed["queued"] and "failed this part too" in failed["reason"]
    assert queue.depth() == 1


def test_unknown_in_flight_and_forgotten_parts_are_refused_saying_which(desk, tmp_path: Path) -> None:
    flags, parts, queue, in_flight = desk
    with pytest.raises(CommandError, match="unknown camera 'dock'") as nowhere:
        flag(flags, "P-1", camera="dock")
    assert nowhere.value.fields == {"camera": "dock", "part_id": "P-1", "found": False, "queued": False}
    with pytest.raises(CommandError, match=r"inspected no part 'P-7'.*last 10 per camera"):
        flag(flags, "P-7")
    in_flight.add(("gate", "P-8"))
    with pytest.raises(CommandError, match="still being inspected"):
        flag(flags, "P-8")
    parts.note(inspected(3, "P-3"))
    parts.resize(per_camera=10, max_bytes=0)  # its frame is let go, the part is still known
    with pytest.raises(CommandError, match="no longer held") as forgotten:
        flag(flags, "P-3")
    assert forgotten.value.fields["found"] and forgotten.value.fields["verdict"] == "pass"
    assert queue.depth() == 0


def test_a_flag_the_queue_cannot_take_says_why_and_keeps_the_frame_for_a_retry(desk, tmp_path: Path) -> None:
    flags, parts, queue, _ = desk
    parts.note(inspected(1, "P-1"))
    queue.reconfigure(config(samplers=["threshold-band"]))
    assert flag(flags, "P-1") == {"camera": "gate", "part_id": "P-1", "found": True, "frame_id": 1,
                                  "verdict": "pass", "queued": False,
                                  "reason": "queue.samplers does not list flagged-miss: flags are not queued"}
    queue.reconfigure(config(samplers=["flagged-miss"], per_minute=0))
    refused = flag(flags, "P-1")
    assert not refused["queued"] and refused["reason"] == "per-minute quota of 0 reached"
    queue.reconfigure(config(samplers=["flagged-miss"]))
    assert flag(flags, "P-1")["queued"] and queue.depth() == 1
