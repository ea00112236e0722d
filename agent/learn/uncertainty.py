"""How unsure the model was about a queued frame, so reviewers see the most useful frames first.

The margin of a box is |score - its class threshold|: 0 means the model could not tell defect from no defect. The
margin of a frame is the smallest margin over its boxes. A frame without boxes (queued because the line flagged the
part, or at random) has the margin of "every class scored 0": its lowest class threshold. Review order is smallest
margin first, oldest first among equals.

`unsure_and_varied_first` (`queue.review_order: unsure-varied`) is for queues that fill with runs of look-alike
frames: still unsure first, but each next frame is the one least like the frames before it (farthest by frame hash,
`agent.learn.dedup.dhash`) among the `SHORTLIST_FACTOR` x as many most unsure frames not yet taken, so the first N
of the list are not N of the same look, for any N. On the active-learning bench's pool of independent frames it
taught the model no more than the plain order (docs/training.md, "Active learning under drift").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from agent.detections import Detections
from agent.learn.entry import QueueEntry

DEFAULT_THRESHOLD = 0.5  # a class missing from an entry's thresholds (never stored by the daemon) counts as 0.5
SHORTLIST_FACTOR = 3
_BITS_SET = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.int32)  # popcount of each byte value
_FAR = 65  # farther than any two 64-bit hashes: nothing picked or taken yet


def box_margins(entry: QueueEntry) -> list[float]:
    """|score - class threshold| of each predicted box, in the stored order."""
    return [float(v) for v in detections_box_margins(entry.detections, entry.thresholds)]


def detections_box_margins(detections: Detections, thresholds: Mapping[str, float]) -> np.ndarray:
    """`box_margins` of predictions not (yet) queued."""
    return np.abs(detections.score - detections.box_thresholds(thresholds, DEFAULT_THRESHOLD))


def margin(entry: QueueEntry) -> float:
    """The frame's margin: the smallest box margin, or the lowest class threshold when there is no box."""
    return detections_margin(entry.detections, entry.thresholds)


def detections_margin(detections: Detections, thresholds: Mapping[str, float]) -> float:
    """`margin` of predictions not (yet) queued: what a frame's review rank would be if it were."""
    if len(detections):
        return float(np.min(detections_box_margins(detections, thresholds)))
    limits_of_classes = [thresholds.get(name, DEFAULT_THRESHOLD) for name in detections.class_names]
    return float(min(limits_of_classes, default=DEFAULT_THRESHOLD))


def most_unsure_first(entries: Iterable[QueueEntry]) -> list[QueueEntry]:
    """The entries in review order: smallest margin first, then by id (oldest first)."""
    return sorted(entries, key=lambda entry: (margin(entry), entry.id))


def unsure_and_varied_first(entries: Iterable[QueueEntry], limit: int | None = None,
                            reviewed: Sequence[int] = ()) -> list[QueueEntry]:
    """The first `limit` (default all) entries in the unsure-and-varied review order (module doc); the frames
    already reviewed (their hashes) count as taken, so a list loaded again after some reviews still starts with
    frames unlike them."""
    ordered = most_unsure_first(entries)
    return [ordered[i] for i in varied_order([entry.dhash for entry in ordered], limit, taken=reviewed)]


def varied_order(hashes: Sequence[int], limit: int | None = None, shortlist_factor: int = SHORTLIST_FACTOR,
                 taken: Sequence[int] = ()) -> list[int]:
    """The first `limit` positions of `hashes` (frames already most unsure first) to review: again and again, among
    the first `shortlist_factor` x (picks + 1) positions not yet picked, the one farthest (Hamming) from every frame
    picked or `taken` before; the more unsure one among equals (so with nothing taken, position 0 comes first)."""
    wanted = len(hashes) if limit is None else min(limit, len(hashes))
    # the first `wanted` picks never look past this many positions: the shortlist grows by the factor per pick
    count = min(len(hashes), (shortlist_factor + 1) * wanted)
    packed = np.array(hashes[:count], dtype=np.uint64)
    nearest = np.full(count, _FAR)
    for other in taken:
        nearest = np.minimum(nearest, hamming_to(packed, other))
    picked = np.zeros(count, dtype=bool)
    order: list[int] = []
    while len(order) < wanted:
        shortlist = np.flatnonzero(~picked)[:shortlist_factor * (len(order) + 1)]
        pick = int(shortlist[np.argmax(nearest[shortlist])])  # argmax: the first (most unsure) among equals
        order.append(pick)
        picked[pick] = True
        nearest = np.minimum(nearest, hamming_to(packed, int(packed[pick])))
    return order


def hamming_to(packed: np.ndarray, other: int) -> np.ndarray:
    """Bits in which each 64-bit hash of `packed` differs from `other`."""
    differing = (packed ^ np.uint64(other)).view(np.uint8).reshape(len(packed), 8)
    return _BITS_SET[differing].sum(axis=1)


ReviewOrder = Callable[[Iterable[QueueEntry], int | None, Callable[[], Sequence[int]]], list[QueueEntry]]


def review_order(name: str) -> ReviewOrder:
    """The review order `queue.review_order` names: (entries, limit, reviewed) -> the first `limit` (None: all)
    entries to review; `reviewed()` gives the hashes of the frames already reviewed, asked for only by an order that
    uses them (it reads the queue's index)."""
    return _REVIEW_ORDERS[name]


_REVIEW_ORDERS: dict[str, ReviewOrder] = {
    "unsure": lambda entries, limit, reviewed: most_unsure_first(entries)[:limit],
    "unsure-varied": lambda entries, limit, reviewed: unsure_and_varied_first(entries, limit, reviewed()),
}
