"""The low-confidence learning queue: frames the model was unsure about, kept for review and fine-tuning.

Layout under `state_dir/queue/`: `index.sqlite3` (one row per entry: camera, frame, reason, model version, the
predictions, review status; `agent.learn.index`) and `frames/NNNNNNNNN.png` (the frame, lossless;
`agent.learn.frames`).

`offer()` runs the samplers, then the quotas, then near-duplicate suppression (`agent.learn.dedup`), then stores the
frame and evicts the oldest entries beyond the disk budget (unreviewed ones before `labelled` ones). Every
frame that is not queued comes back with the reason; nothing is dropped without a count (`stats`).
Exports for review and training are `agent.learn.export`.

Reviews (`set_status`, `record_reviews`) store the status, the boxes and who decided (`agent.learn.entry`). Only
`verified()` entries are labels: calibration trains on `verified("training")` and judges on `verified("golden")`;
`set_counts()` gives their per-class counts (`agent.learn.split`).
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import structlog

from agent.capture.worker import Frame
from agent.detections import Detections
from agent.learn import index
from agent.learn.dedup import RECENT_ENTRIES, RecentEntries, RecentEntry, dhash
from agent.learn.entry import (
    STATUSES,
    EntryStatus,
    OfferResult,
    QueueEntry,
    QueueError,
    ReviewRecord,
    Split,
    check_statuses,
)
from agent.learn.export import ExportFormat, export_entries
from agent.learn.frames import encode_png, remove_orphans, write_atomically
from agent.learn.samplers import Candidate, RateQuota, Sampler, build_samplers
from agent.learn.split import SetCounts, class_names_of, count_set
from agent.statedir import StateDir

_log = structlog.get_logger("agent.learn")


class LearningQueue:
    """The queue in `directory` (usually `state_dir / "queue"`), configured by a `QueueConfig`."""

    def __init__(self, directory: Path, config: Any, samplers: Sequence[Sampler] | None = None,
                 clock: Any = time.time) -> None:
        self.directory = Path(directory)
        self.frames_dir = self.directory / "frames"
        self.cfg = config
        self.samplers = list(samplers) if samplers is not None else build_samplers(config)
        self.stats: Counter[str] = Counter()
        self._clock = clock
        self._lock = threading.RLock()
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self._db = index.connect(self.directory / "index.sqlite3")
        self.quota = RateQuota(config.per_minute, config.per_hour, config.per_day, clock=clock)
        self.quota.seed(ts for (ts,) in self._db.execute(
            "SELECT created_ts FROM entries WHERE created_ts > ?", (clock() - 86400.0,)))
        self._recent = RecentEntries(self._load_recent())
        self._remove_orphans()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def reconfigure(self, config: Any) -> None:
        """A reload's new `QueueConfig`: samplers, quotas, budget and dedup apply from the next offer on (the quota
        windows keep what they counted; a smaller budget evicts at the next stored frame)."""
        samplers = build_samplers(config)
        with self._lock:
            self.cfg, self.samplers = config, samplers
            self.quota.set_limits(config.per_minute, config.per_hour, config.per_day)

    # ----- offering frames ----------------------------------------------------------------------------------------
    def offer(self, frame: Frame, detections: Detections, thresholds: Mapping[str, float],
              flagged: bool | None = None, model: str = "", flag_reason: str | None = None,
              verdict: str | None = None) -> OfferResult:
        """Queue `frame` if a sampler wants it and quota, duplicates and disk allow; never raises on storage errors.

        `flagged` defaults to whether the frame's trigger said the part is bad (`frame.expect == "fail"`);
        `flag_reason` is the line's why (`cmd/flag`), kept in the entry's reason; `verdict` the daemon's on the frame.
        """
        self.stats["offered"] += 1
        if not self.cfg.enabled:
            return self._skip("disabled", "queue disabled in config")
        flag = frame.expect == "fail" if flagged is None else flagged
        candidate = Candidate(detections, thresholds, flag, flag_reason, verdict)
        reasons = [r for s in list(self.samplers) if (r := s.reason(candidate))]
        if not reasons:
            return self._skip("not-sampled", "no sampler selected this frame")
        over = self.quota.exceeded()
        if over:
            return self._skip("quota", over)
        image_hash = dhash(frame.image)
        duplicate = self._near_duplicate(frame.camera, image_hash, detections)
        if duplicate is not None:
            return self._skip("duplicate", duplicate)
        try:
            entry = self._store(frame, detections, thresholds, "; ".join(reasons), model, image_hash)
        except (OSError, sqlite3.Error, QueueError) as exc:
            _log.error("learning queue write failed", camera=frame.camera, frame_id=frame.frame_id, error=str(exc))
            return self._skip("error", f"storage error: {exc}")
        self.quota.record()
        self.stats["queued"] += 1
        self._evict_over_budget(keep=entry.id)
        return OfferResult(entry)

    def _skip(self, kind: str, reason: str) -> OfferResult:
        self.stats[f"skipped_{kind}"] += 1
        return OfferResult(None, reason)

    def _near_duplicate(self, camera: str, image_hash: int, detections: Detections) -> str | None:
        with self._lock:
            recent = self._recent.snapshot()
        return recent.duplicate_of(camera, image_hash, detections, self.cfg.dedup_max_distance)

    def _store(self, frame: Frame, detections: Detections, thresholds: Mapping[str, float], reason: str,
               model: str, image_hash: int) -> QueueEntry:
        png = encode_png(frame.image)
        if len(png) > self.cfg.max_bytes:
            raise QueueError(f"frame of {len(png)} bytes exceeds the whole queue budget of {self.cfg.max_bytes}")
        height, width = frame.image.shape[:2]
        with self._lock, self._db:  # the row commits only after the PNG is written
            cursor = self._db.execute(
                "INSERT INTO entries (created_ts, camera, frame_id, part_id, captured_at, reason, model, width, "
                "height, dhash, file, bytes, detections, thresholds) VALUES (?,?,?,?,?,?,?,?,?,?,'',?,?,?)",
                (self._clock(), frame.camera, frame.frame_id, frame.part_id, frame.captured_at.isoformat(), reason,
                 model, width, height, f"{image_hash:016x}", len(png), detections.serialize(),
                 json.dumps(dict(thresholds))),
            )
            entry_id = int(cursor.lastrowid or 0)
            name = f"{entry_id:09d}.png"
            write_atomically(self.frames_dir / name, png)
            self._db.execute("UPDATE entries SET file = ? WHERE id = ?", (name, entry_id))
            self._recent.add(RecentEntry(entry_id, frame.camera, image_hash, detections))
        return self.get(entry_id)

    # ----- budget and purge ---------------------------------------------------------------------------------------
    def _evict_over_budget(self, keep: int) -> int:
        """Delete the oldest entries (unreviewed before labelled) until the frames fit `max_bytes`."""
        evicted = 0
        with self._lock:
            while self.total_bytes() > self.cfg.max_bytes:
                row = self._db.execute(
                    "SELECT id FROM entries WHERE id != ? ORDER BY status = 'labelled', id LIMIT 1", (keep,)
                ).fetchone()
                if row is None:
                    break
                self._delete([int(row[0])])
                evicted += 1
        if evicted:
            self.stats["evicted"] += evicted
            _log.warning("learning queue over its disk budget: evicted oldest entries", evicted=evicted,
                         max_bytes=self.cfg.max_bytes)
        return evicted

    def purge(self, all: bool = False, older_than: timedelta | None = None,
              status: EntryStatus | None = None, ids: Sequence[int] | None = None) -> int:
        """Delete entries matching every given criterion; returns how many. At least one criterion is required."""
        if not all and older_than is None and status is None and ids is None:
            raise QueueError("purge needs a criterion: all, older_than, status or ids")
        clauses, params = index.filters(status=status)
        if older_than is not None:
            clauses.append("created_ts < ?")
            params.append(self._clock() - older_than.total_seconds())
        if ids is not None:
            clauses.append(f"id IN ({','.join('?' * len(ids))})" if ids else "0")
            params.extend(ids)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        with self._lock:
            doomed = [int(r[0]) for r in self._db.execute(f"SELECT id FROM entries{where}", params)]
            self._delete(doomed)
        return len(doomed)

    def _delete(self, ids: Sequence[int]) -> None:
        for chunk_start in range(0, len(ids), 500):
            chunk = list(ids[chunk_start:chunk_start + 500])
            marks = ",".join("?" * len(chunk))
            with self._lock, self._db:
                files = [r[0] for r in self._db.execute(f"SELECT file FROM entries WHERE id IN ({marks})", chunk)]
                self._db.execute(f"DELETE FROM entries WHERE id IN ({marks})", chunk)
            for name in files:
                (self.frames_dir / name).unlink(missing_ok=True)
        with self._lock:
            self._recent.forget(ids)

    # ----- reading --------------------------------------------------------------------------------------------------
    def get(self, entry_id: int) -> QueueEntry:
        with self._lock:
            row = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise QueueError(f"no queue entry with id {entry_id}")
        return self._entry(row)

    def _entry(self, row: sqlite3.Row) -> QueueEntry:
        return index.entry_from_row(row, self.frames_dir, self.cfg.golden_fraction)

    def reviewed_hashes(self, besides: EntryStatus | None = None) -> list[int]:
        """Frame hashes of the entries a person reviewed, those with status `besides` left out."""
        where, params = ("verified = 1", ()) if besides is None else ("verified = 1 AND status != ?", (besides,))
        with self._lock:
            rows = self._db.execute(f"SELECT dhash FROM entries WHERE {where}", params).fetchall()
        return [int(row["dhash"], 16) for row in rows]

    def list(self, status: EntryStatus | None = None, camera: str | None = None,
             limit: int | None = None) -> list[QueueEntry]:
        """Entries oldest first, optionally filtered."""
        clauses, params = index.filters(status=status, camera=camera)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM entries{where} ORDER BY id{tail}", params).fetchall()
        return [self._entry(row) for row in rows]

    def image(self, entry_id: int) -> np.ndarray:
        """The stored frame (BGR uint8), bit-exact as captured."""
        entry = self.get(entry_id)
        image = cv2.imread(str(entry.path), cv2.IMREAD_COLOR)
        if image is None:
            raise QueueError(f"entry {entry_id}: frame file {entry.path} is missing or unreadable")
        return image

    # ----- reviews ----------------------------------------------------------------------------------------------------
    def set_status(self, entry_id: int, status: EntryStatus, labels: Detections | None = None,
                   reviewer: str | None = None) -> QueueEntry:
        """Record a review outcome (and, for `labelled`, optionally the corrected boxes); with a `reviewer` it is a
        human's decision (verified, timed now), without one the entry is stored unverified."""
        self.record_reviews([ReviewRecord(entry_id, status, labels, reviewer)])
        return self.get(entry_id)

    def record_reviews(self, records: Sequence[ReviewRecord]) -> None:
        """Several review outcomes in one transaction (a reviewed file is imported whole or not at all)."""
        check_statuses(record.status for record in records)
        when = datetime.fromtimestamp(self._clock(), timezone.utc).isoformat()
        rows = [(r.status, index.labels_text(r.labels), int(r.verified), r.reviewer, when if r.verified else None,
                 r.entry_id) for r in records]
        with self._lock, self._db:
            self._require_ids([r.entry_id for r in records])
            self._db.executemany("UPDATE entries SET status = ?, labels = ?, verified = ?, reviewer = ?, "
                                 "reviewed_at = ? WHERE id = ?", rows)

    def add_reason(self, entry_id: int, reason: str) -> QueueEntry:
        """Add a reason to a queued entry (the line flagged a part already queued for another reason)."""
        with self._lock, self._db:
            self._require_ids([entry_id])
            self._db.execute("UPDATE entries SET reason = reason || '; ' || ? WHERE id = ?", (reason, entry_id))
        return self.get(entry_id)

    def set_golden(self, entry_id: int, golden: bool | None) -> QueueEntry:
        """The manual golden toggle: True golden, False training, None back to the frame hash's assignment."""
        with self._lock, self._db:
            self._require_ids([entry_id])
            self._db.execute("UPDATE entries SET golden = ? WHERE id = ?",
                             (None if golden is None else int(golden), entry_id))
        return self.get(entry_id)

    def _require_ids(self, ids: Sequence[int]) -> None:
        for entry_id in ids:
            if self._db.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone() is None:
                raise QueueError(f"no queue entry with id {entry_id}")

    # ----- what training and evaluation may use ----------------------------------------------------------------------
    def verified(self, split: Split | None = None) -> builtins.list[QueueEntry]:
        """The labels: `labelled` entries a human verified, oldest first, of one set (`training`/`golden`) or both.
        Unverified, `new` and `rejected` entries are never labels."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM entries WHERE status = 'labelled' AND verified = 1 ORDER BY id").fetchall()
        entries = [self._entry(row) for row in rows]
        return [e for e in entries if split is None or e.split == split]

    def set_counts(self, split: Split) -> SetCounts:
        """Frames and per-class counts of the verified training or golden set (`agent.learn.split`)."""
        return count_set(self.verified(split), class_names_of(self.list(limit=1)))

    def status_counts(self) -> dict[str, int]:
        """Entries by review status, plus `verified` (any status) and `unverified_labelled` (labelled, but no
        human looked: not used until someone does)."""
        with self._lock:
            counts = dict(self._db.execute("SELECT status, COUNT(*) FROM entries GROUP BY status").fetchall())
            verified, unverified = self._db.execute(
                "SELECT COALESCE(SUM(verified), 0), COALESCE(SUM(status = 'labelled' AND verified = 0), 0) "
                "FROM entries").fetchone()
        return {**{s: int(counts.get(s, 0)) for s in STATUSES}, "verified": int(verified),
                "unverified_labelled": int(unverified)}

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def total_bytes(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0])

    def _load_recent(self) -> builtins.list[RecentEntry]:
        rows = self._db.execute(
            "SELECT id, camera, dhash, detections FROM entries ORDER BY id DESC LIMIT ?", (RECENT_ENTRIES,)
        ).fetchall()
        return [RecentEntry(r["id"], r["camera"], int(r["dhash"], 16), Detections.deserialize(r["detections"]))
                for r in reversed(rows)]

    def _remove_orphans(self) -> None:
        """Delete PNGs no row points to (a crash between writing and committing), once they are old enough."""
        known = {r[0] for r in self._db.execute("SELECT file FROM entries")}
        removed = remove_orphans(self.frames_dir, known)
        if removed:
            _log.warning("removed orphan frames from the learning queue", removed=removed)

    # ----- export ---------------------------------------------------------------------------------------------------
    def export(self, out: Path, format: ExportFormat, statuses: Sequence[str] = ("new", "labelled"),
               min_score: float = 0.0) -> Path:
        """Write the entries with the given statuses for review or training (`agent.learn.export`)."""
        return export_entries(self.list(), out, format, statuses, min_score)


@contextmanager
def open_queue(state_dir: Path, config: Any) -> Iterator[LearningQueue]:
    """The learning queue of a state directory (`StateDir(state_dir).queue`), closed on exit."""
    queue = LearningQueue(StateDir(state_dir).queue, config)
    try:
        yield queue
    finally:
        queue.close()
