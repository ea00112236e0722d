"""Training or golden: which reviewed frames teach a model and which judge it, and how many of each class there are.

A frame's set is decided by its 64-bit dHash (`agent.learn.dedup`): SHA-256 of the hash, read as a number in [0, 1),
below `golden_fraction` means golden. The assignment is stable (the same frame always lands in the same set, across
restarts, exports and machines), needs no stored state, and frames that look the same (equal dHash) land together,
so a near-copy of a golden frame does not leak into training. Raising the fraction only moves frames from training
to golden, never the other way. A technician's manual toggle (stored per entry) overrides the hash.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.learn.entry import QueueEntry

DEFAULT_GOLDEN_FRACTION = 0.2


def hash_position(image_hash: int) -> float:
    """Where a frame's dHash falls in [0, 1), uniformly spread (SHA-256), the same on every machine."""
    digest = hashlib.sha256(f"{image_hash:016x}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def golden_by_hash(image_hash: int, fraction: float) -> bool:
    """Whether the frame belongs to the golden set when nobody toggled it by hand."""
    return hash_position(image_hash) < fraction


def is_golden(image_hash: int, manual: bool | None, fraction: float) -> bool:
    """The manual toggle when set, else the hash's assignment."""
    return golden_by_hash(image_hash, fraction) if manual is None else manual


@dataclass(frozen=True)
class SetCounts:
    """What one set (training or golden) holds: frames, frames without defects, and per class the boxes and the
    frames showing at least one. Every class of the model is listed, with 0 when absent."""

    frames: int = 0
    defect_free: int = 0
    boxes: dict[str, int] = field(default_factory=dict)
    frames_with: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"frames": self.frames, "defect_free": self.defect_free, "boxes": dict(self.boxes),
                "frames_with": dict(self.frames_with)}


def class_names_of(entries: Iterable[QueueEntry]) -> list[str]:
    """Every class the entries' models know, in the order they first name them."""
    names: list[str] = []
    for entry in entries:
        names.extend(n for n in entry.detections.class_names if n not in names)
    return names


def count_set(entries: Sequence[QueueEntry], class_names: Sequence[str] = ()) -> SetCounts:
    """Counts over labelled `entries` (their reviewed labels); classes from `class_names` and the entries."""
    names = list(class_names) + [n for n in class_names_of(entries) if n not in class_names]
    boxes: Counter[str] = Counter()
    frames_with: Counter[str] = Counter()
    defect_free = 0
    for entry in entries:
        labels = entry.label_boxes().labels
        boxes.update(labels)
        frames_with.update(set(labels))
        defect_free += not labels
    return SetCounts(len(entries), defect_free, {n: boxes[n] for n in names}, {n: frames_with[n] for n in names})
