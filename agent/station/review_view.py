"""How the review API shows queue entries: a short line per entry for the list, the whole entry for the editor, and
the queue's summary (counts by status, per-class counts of the training and golden sets)."""

from __future__ import annotations

from typing import Any

from agent.detections import Detections
from agent.learn.entry import QueueEntry, rfc3339_utc
from agent.learn.queue import LearningQueue
from agent.learn.uncertainty import DEFAULT_THRESHOLD, margin

DECIMALS = 2  # box coordinates in pixels: hundredths are below anything a person can draw


def frame_url(entry_id: int) -> str:
    return f"/api/review/entries/{entry_id}/frame.png"


def review_facts(entry: QueueEntry) -> dict[str, Any]:
    reviewed_at = None if entry.reviewed_at is None else rfc3339_utc(entry.reviewed_at)
    return {"verified": entry.verified, "reviewer": entry.reviewer, "reviewed_at": reviewed_at}


def list_item(entry: QueueEntry) -> dict[str, Any]:
    """One entry in the review list (the editor fetches the rest when it opens the entry)."""
    return {"id": entry.id, "camera": entry.camera, "captured_at": rfc3339_utc(entry.captured_at),
            "status": entry.status, "margin": round(margin(entry), 4), "suggestion_count": len(entry.detections),
            "verified": entry.verified, "golden": entry.golden}


def suggestions(entry: QueueEntry) -> list[dict[str, Any]]:
    """The model's boxes with their scores and the threshold each was judged against."""
    limits = entry.detections.box_thresholds(entry.thresholds, DEFAULT_THRESHOLD)
    return [{"label": box.label, "score": round(box.score, 4), "threshold": round(float(limit), 4),
             "box": [round(v, DECIMALS) for v in box.xyxy]}
            for box, limit in zip(entry.detections, limits)]


def label_boxes(labels: Detections | None) -> list[dict[str, Any]] | None:
    if labels is None:
        return None
    return [{"label": box.label, "box": [round(v, DECIMALS) for v in box.xyxy]} for box in labels]


def entry_detail(entry: QueueEntry) -> dict[str, Any]:
    """Everything the editor shows of one entry."""
    return {
        **list_item(entry), "frame_id": entry.frame_id, "part_id": entry.part_id, "reason": entry.reason,
        "model": entry.model, "width": entry.width, "height": entry.height,
        "class_names": list(entry.detections.class_names), "thresholds": entry.thresholds,
        "suggestions": suggestions(entry), "labels": label_boxes(entry.labels), "review": review_facts(entry),
        "golden_manual": entry.golden_manual, "image": frame_url(entry.id),
    }


def queue_summary(queue: LearningQueue) -> dict[str, Any]:
    return {"statuses": queue.status_counts(), "golden_fraction": queue.cfg.golden_fraction,
            "training": queue.set_counts("training").to_json(), "golden": queue.set_counts("golden").to_json()}
