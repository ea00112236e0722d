"""The learning queue's value types: one stored entry with its review facts, the outcome of offering a frame, a
review to record, review statuses, errors.

Review facts: `verified` says a human looked at the frame and decided (in the station, or by changing it in a
reviewed file); `reviewer` and `reviewed_at` say who and when. Only verified `labelled` frames are labels: a frame
whose boxes are the model's own suggestions is never one. `golden` says whether a verified frame belongs to the
golden set (held out to judge models) rather than the training set; see `agent.learn.split`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from agent.detections import Detections

EntryStatus = Literal["new", "labelled", "rejected"]
STATUSES: tuple[str, ...] = ("new", "labelled", "rejected")
Split = Literal["training", "golden"]


class QueueError(ValueError):
    """A request the queue cannot serve (unknown entry id, bad status or format); names the bad value."""


def check_statuses(statuses: Iterable[str]) -> None:
    """Raise `QueueError` naming the first status that is not a review status."""
    bad = [status for status in statuses if status not in STATUSES]
    if bad:
        raise QueueError(f"status {bad[0]!r}: must be one of {list(STATUSES)}")


@dataclass(frozen=True)
class QueueEntry:
    id: int
    created_at: datetime
    camera: str
    frame_id: int
    part_id: str | None
    captured_at: datetime
    reason: str
    model: str
    status: EntryStatus
    width: int
    height: int
    dhash: int
    path: Path
    bytes: int
    detections: Detections
    thresholds: dict[str, float]
    labels: Detections | None = None  # reviewed boxes, once someone labelled the frame
    verified: bool = False  # a human looked at this frame and decided its status
    reviewer: str | None = None
    reviewed_at: datetime | None = None
    golden: bool = False  # in the golden set (else training), by frame hash or by the manual toggle
    golden_manual: bool = False  # `golden` was set by hand and overrides the hash

    @property
    def split(self) -> Split:
        return "golden" if self.golden else "training"

    def label_boxes(self) -> Detections:
        """What the frame is labelled with: the reviewed boxes; for a frame marked `labelled` without boxes (an
        older API), its predictions that reached the thresholds it was judged with."""
        if self.labels is not None:
            return self.labels
        return self.detections.above(self.thresholds, default=0.5)

    def to_json(self) -> dict[str, Any]:
        """Plain data for the CLI and events."""
        return {
            "id": self.id, "created_at": self.created_at.isoformat(), "camera": self.camera,
            "frame_id": self.frame_id, "part_id": self.part_id, "captured_at": self.captured_at.isoformat(),
            "reason": self.reason, "model": self.model, "status": self.status, "width": self.width,
            "height": self.height, "dhash": f"{self.dhash:016x}", "path": str(self.path), "bytes": self.bytes,
            "thresholds": self.thresholds, "predictions": self.detections.to_json(decimals=2),
            "labels": None if self.labels is None else self.labels.to_json(decimals=2),
            "verified": self.verified, "reviewer": self.reviewer,
            "reviewed_at": None if self.reviewed_at is None else rfc3339_utc(self.reviewed_at),
            "golden": self.golden, "golden_manual": self.golden_manual,
        }


@dataclass(frozen=True)
class ReviewRecord:
    """A review outcome to store: the status, the boxes (for `labelled`), and who decided. `reviewer=None` means no
    human decided (e.g. a reviewed file left the model's suggestions untouched): the entry is stored unverified."""

    entry_id: int
    status: EntryStatus
    labels: Detections | None = None
    reviewer: str | None = None

    @property
    def verified(self) -> bool:
        return self.reviewer is not None


def rfc3339_utc(moment: datetime) -> str:
    """`2025-01-31T12:00:00.123Z`: UTC, millisecond precision (review times, as the station's audit log writes)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class OfferResult:
    """What `offer()` did: the stored entry, or why the frame was not queued."""

    entry: QueueEntry | None
    skipped: str | None = None

    def __bool__(self) -> bool:
        return self.entry is not None
