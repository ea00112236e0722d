"""Review order: the frame whose box scored closest to its class threshold comes first."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.detections import Detections
from agent.learn.uncertainty import (
    box_margins,
    margin,
    most_unsure_first,
    review_order,
    unsure_and_varied_first,
    varied_order,
)
from tests.agent.learn.helpers import CLASSES, entry_with


def boxes(labels: list[str], scores: list[float]) -> Detections:
    return Detections.from_labels(labels, [[1 + i, 1, 9 + i, 9] for i in range(len(labels))], CLASSES, (64, 64),
                                  score=scores)


def test_a_frames_margin_is_its_closest_box_to_the_class_threshold() -> None:
    entry = entry_with(predictions=boxes(["scratch", "hole"], [0.9, 0.35]), thresholds={
        "scratch": 0.5, "hole": 0.3, "stain": 0.5})
    assert box_margins(entry) == pytest.approx([0.4, 0.05], abs=1e-6)
    assert margin(entry) == pytest.approx(0.05, abs=1e-6)


def test_a_frame_without_boxes_counts_as_every_class_scoring_zero() -> None:
    empty = entry_with(predictions=Detections.empty(CLASSES, (64, 64)),
                       thresholds={"scratch": 0.6, "hole": 0.4, "stain": 0.5})
    assert margin(empty) == pytest.approx(0.4)


def test_most_unsure_first_then_oldest() -> None:
    entries = [entry_with(1, boxes(["scratch"], [0.7])), entry_with(2, boxes(["scratch"], [0.52])),
               entry_with(3, boxes(["hole"], [0.48])), entry_with(4, Detections.empty(CLASSES, (64, 64)))]
    assert [e.id for e in most_unsure_first(entries)] == [2, 3, 1, 4]


# ----- unsure and varied: each next frame the least like those before it, among the most unsure ----------------------
ALIKE, OTHER, THIRD = 0x0000_0000_0000_0000, 0xFFFF_FFFF_0000_0000, 0x0000_0000_FFFF_FFFF


def test_the_next_frame_is_the_least_like_those_before_it_among_the_most_unsure() -> None:
    # most unsure first: two near-identical frames, then two that look different
    hashes = [ALIKE, ALIKE | 1, OTHER, THIRD]
    assert varied_order(hashes) == [0, 2, 3, 1]  # the near-duplicate of the first waits until last


def test_the_shortlist_keeps_a_frame_far_down_the_list_from_jumping_ahead() -> None:
    # the very different frame is 9th most unsure: 3 x (picks + 1) are shortlisted, so it comes third, not second
    hashes = [ALIKE, *(ALIKE | 1 << bit for bit in range(7)), OTHER]
    assert varied_order(hashes)[:3] == [0, 1, 8]


def test_equally_far_frames_keep_their_unsure_order() -> None:
    assert varied_order([ALIKE, OTHER, OTHER, THIRD]) == [0, 1, 3, 2]


def test_the_first_n_of_the_order_do_not_depend_on_how_many_are_asked_for() -> None:
    hashes = [(i * 0x9E37_79B9_7F4A_7C15) % 2**64 for i in range(200)]
    full = varied_order(hashes)
    assert sorted(full) == list(range(200))
    assert all(varied_order(hashes, n) == full[:n] for n in (0, 1, 7, 50, 199))


def test_frames_already_reviewed_count_as_taken() -> None:
    assert varied_order([ALIKE, ALIKE | 1, OTHER]) == [0, 2, 1]
    # a list loaded again after a review of ALIKE: the frame identical to it comes last
    assert varied_order([ALIKE, ALIKE | 1, OTHER], taken=[ALIKE]) == [2, 1, 0]


def test_queue_entries_come_unsure_and_varied() -> None:
    scored = [(1, 0.7, THIRD), (2, 0.52, ALIKE), (3, 0.51, ALIKE | 1), (4, 0.45, OTHER)]
    entries = [replace(entry_with(i, boxes(["scratch"], [score])), dhash=h) for i, score, h in scored]
    assert [e.id for e in most_unsure_first(entries)] == [3, 2, 4, 1]
    assert [e.id for e in unsure_and_varied_first(entries)] == [3, 4, 1, 2]
    assert [e.id for e in unsure_and_varied_first(entries, limit=2)] == [3, 4]
    assert [e.id for e in review_order("unsure-varied")(entries, None, lambda: [ALIKE])] == [4, 1, 3, 2]

    def never_asked() -> list[int]:
        raise AssertionError("the plain order must not read the reviewed frames")
    assert [e.id for e in review_order("unsure")(entries, 3, never_asked)] == [3, 2, 4]
