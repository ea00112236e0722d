"""Near-duplicate suppression for the learning queue: a frame is a duplicate of a recent entry from the same camera
when their 64-bit dHashes differ in at most `max_distance` bits *and* the model predicted the same boxes on both
(the same view with a new defect is worth a look)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from agent.detections import Detections, box_iou

RECENT_ENTRIES = 256  # entries compared for near-duplicates
_DUPLICATE_IOU = 0.5


def dhash(image: np.ndarray) -> int:
    """64-bit difference hash: sign of horizontal gradients on a 9x8 grey thumbnail."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def same_predictions(a: Detections, b: Detections) -> bool:
    """Same labels and every box of `a` overlapping a same-label box of `b` (IoU >= 0.5), one to one."""
    if len(a) != len(b) or sorted(a.labels) != sorted(b.labels):
        return False
    if len(a) == 0:
        return True
    iou = box_iou(a.xyxy, b.xyxy)
    same_label = np.asarray(a.labels)[:, None] == np.asarray(b.labels)[None, :]
    iou = np.where(same_label, iou, 0.0)
    used: set[int] = set()
    for row in iou:
        candidates = [j for j in np.argsort(-row) if j not in used and row[j] >= _DUPLICATE_IOU]
        if not candidates:
            return False
        used.add(int(candidates[0]))
    return True


@dataclass(frozen=True)
class RecentEntry:
    id: int
    camera: str
    dhash: int
    detections: Detections


class RecentEntries:
    """The newest `RECENT_ENTRIES` queue entries, the ones a new frame is compared with (not thread-safe)."""

    def __init__(self, entries: Iterable[RecentEntry] = ()) -> None:
        self._entries: deque[RecentEntry] = deque(entries, maxlen=RECENT_ENTRIES)

    def snapshot(self) -> RecentEntries:
        """A copy to compare against without holding the queue's lock."""
        return RecentEntries(self._entries)

    def add(self, entry: RecentEntry) -> None:
        self._entries.append(entry)

    def forget(self, ids: Iterable[int]) -> None:
        """Drop deleted entries, so a frame is never called a duplicate of one that is gone."""
        gone = set(ids)
        kept = [entry for entry in self._entries if entry.id not in gone]
        self._entries.clear()
        self._entries.extend(kept)

    def duplicate_of(self, camera: str, image_hash: int, detections: Detections, max_distance: int) -> str | None:
        """Why the frame is a near-duplicate of a recent entry (newest first), or None."""
        for other in reversed(self._entries):
            distance = hamming(image_hash, other.dhash)
            if other.camera == camera and distance <= max_distance \
                    and same_predictions(detections, other.detections):
                return f"near-duplicate of entry {other.id} (hash distance {distance})"
        return None
