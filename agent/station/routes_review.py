"""The review API (technicians only): the learning queue in review order, one entry with the model's suggestions,
its frame, saving a review, the golden toggle, the queue's summary, and "find the ...": phrase grounding on an
entry's frame with the served model (boxes to pre-draw as suggestions; nothing is stored). Every change is written to
the audit log.

Review order is most unsure first: smallest |score - class threshold| over the entry's boxes; with
`queue.review_order: unsure-varied`, unsure first but varied (`agent.learn.uncertainty`).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, Response

from agent.detector.base import DetectorError
from agent.detector.tasks import GROUNDING, TaskError, TaskUnsupported, check_phrase
from agent.learn.entry import QueueEntry, QueueError
from agent.learn.queue import LearningQueue
from agent.learn.uncertainty import review_order
from agent.station.auth import Session
from agent.station.grounding import GroundingBusy
from agent.station.guards import StationContext, check_csrf, field_errors, require_technician, station
from agent.station.review_input import STATUS_OF, GoldenIn, GroundIn, ReviewIn, box_problems, labels_of
from agent.station.review_view import entry_detail, list_item, queue_summary

review = APIRouter(prefix="/api/review", dependencies=[Depends(require_technician), Depends(check_csrf)])
StatusFilter = Literal["new", "labelled", "rejected", "all"]
MAX_LIST = 5000


def review_queue(ctx: StationContext = Depends(station)) -> LearningQueue:
    if ctx.queue is None:
        raise HTTPException(503, "the learning queue is not available (disabled in the config?)")
    return ctx.queue


def queue_entry(entry_id: int, queue: LearningQueue = Depends(review_queue)) -> QueueEntry:
    try:
        return queue.get(entry_id)
    except QueueError:
        raise HTTPException(404, f"no queue entry with id {entry_id} (purged or evicted?)") from None


@review.get("/entries")
def entries(status: StatusFilter = Query(default="new"), limit: int = Query(default=500, ge=1, le=MAX_LIST),
            queue: LearningQueue = Depends(review_queue)) -> dict[str, Any]:
    """Entries with `status` (default: not reviewed yet) in the queue's review order, most unsure first."""
    listed = queue.list(status=None if status == "all" else status)

    def reviewed() -> list[int]:  # frames reviewed but not in this list: a varied order starts unlike them
        return [] if status == "all" else queue.reviewed_hashes(besides=status)

    chosen = review_order(queue.cfg.review_order)(listed, limit, reviewed)
    return {"status": status, "total": len(listed), "order": queue.cfg.review_order,
            "entries": [list_item(e) for e in chosen]}


@review.get("/entries/{entry_id}")
def entry(found: QueueEntry = Depends(queue_entry)) -> dict[str, Any]:
    return entry_detail(found)


@review.get("/entries/{entry_id}/frame.png")
def frame_png(found: QueueEntry = Depends(queue_entry)) -> Response:
    """The stored frame, lossless, as captured."""
    if not found.path.is_file():
        raise HTTPException(404, f"queue entry {found.id}: its frame file is missing")
    return FileResponse(found.path, media_type="image/png")


@review.post("/entries/{entry_id}")
def save_review(body: ReviewIn, found: QueueEntry = Depends(queue_entry), queue: LearningQueue = Depends(review_queue),
                session: Session = Depends(require_technician), ctx: StationContext = Depends(station)) -> Any:
    """Store a technician's decision on one entry (verified, with who and when); bad boxes change nothing."""
    problems = box_problems(body, found.width, found.height, found.detections.class_names)
    if problems:
        return field_errors(problems)
    labels = labels_of(body, found)
    saved = queue.set_status(found.id, STATUS_OF[body.action], labels, reviewer=session.user)
    ctx.audit.record(session.user, session.role, "review", f"queue entry {found.id}", decision=body.action,
                     status=saved.status, boxes=0 if labels is None else len(labels))
    return entry_detail(saved)


@review.put("/entries/{entry_id}/golden")
def set_golden(body: GoldenIn, found: QueueEntry = Depends(queue_entry), queue: LearningQueue = Depends(review_queue),
               session: Session = Depends(require_technician), ctx: StationContext = Depends(station)
               ) -> dict[str, Any]:
    """The manual golden toggle (null: back to the frame hash's assignment)."""
    saved = queue.set_golden(found.id, body.golden)
    ctx.audit.record(session.user, session.role, "golden", f"queue entry {found.id}", golden=body.golden,
                     split=saved.split)
    return entry_detail(saved)


@review.get("/summary")
def summary(queue: LearningQueue = Depends(review_queue)) -> dict[str, Any]:
    """Entries by status; frames and per-class counts of the verified training and golden sets."""
    return queue_summary(queue)


@review.post("/entries/{entry_id}/ground")
async def ground(body: GroundIn, found: QueueEntry = Depends(queue_entry), queue: LearningQueue = Depends(review_queue),
                 ctx: StationContext = Depends(station)) -> Any:
    """Phrase grounding of `phrase` on the entry's frame with the served model, on the grounding worker (one query
    at a time): the boxes it finds, for the page to pre-draw as suggestions. Nothing is stored."""
    bad_phrase = {"field": "phrase", "message": "the served model cannot write this phrase (at most 64 printable "
                                                "characters, no '<' or '>')"}
    try:
        phrase = check_phrase(GROUNDING, body.phrase)
        answer = await ctx.grounding.run(lambda: ctx.backend.ground(queue.image(found.id), phrase))
    except TaskError:
        return field_errors([bad_phrase])
    except GroundingBusy as exc:
        raise HTTPException(429, str(exc)) from None
    except TimeoutError:
        raise HTTPException(504, f"grounding took longer than {ctx.grounding.timeout_s:g} s; it finishes in the "
                                 "background, try again then") from None
    except TaskUnsupported as exc:
        raise HTTPException(501, f"cannot ground here: {exc}") from None
    except QueueError as exc:
        raise HTTPException(404, str(exc)) from None
    except DetectorError as exc:
        raise HTTPException(503, f"grounding failed: {exc}") from None
    return {"entry": found.id, "phrase": phrase, "model": ctx.backend.model_version(),
            "seconds": round(answer.seconds, 3), "regions": [region.to_json() for region in answer.regions]}
