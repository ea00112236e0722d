"""The low-confidence learning queue: frames the model was unsure about, kept for review and fine-tuning.

Layout under `state_dir/queue/`: `index.sqlite3` (one row per entry: camera, frame, reason, model version, the
predictions as JSON, review status) and `frames/NNNNNNNNN.png` (the frame, lossless). A row is committed only
after its PNG is in place, so every committed row has its frame; a PNG without a row (a crash in between) is
removed on the next start once it is a few minutes old.

`offer()` runs the samplers, then the quotas, then near-duplicate suppression (64-bit dHash within
`dedup_max_distance` bits of a recent entry from the same camera *and* the same predicted boxes), then stores the
frame and evicts the oldest entries beyond the disk budget (unreviewed ones before `labelled` ones). Every
frame that is not queued comes back with the reason; nothing is dropped without a count (`stats`).

Exports: COCO (`annotations.json` + `images/`, loadable by pycocotools/faster-coco-eval) and Florence JSONL
(`{"image", "prefix": "<OD>", "suffix": "label<loc_..>..."}`), with the predictions as pre-labels unless an entry
carries reviewed labels.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import structlog

from agent.capture.worker import Frame
from agent.detections import Detections, box_iou
from agent.learn.samplers import Candidate, RateQuota, Sampler, build_samplers

EntryStatus = Literal["new", "labelled", "rejected"]
ExportFormat = Literal["coco", "jsonl"]
STATUSES: tuple[str, ...] = ("new", "labelled", "rejected")
_RECENT_HASHES = 256  # entries compared for near-duplicates
_ORPHAN_GRACE_S = 300.0  # a PNG younger than this may belong to a row another process is about to commit
_DUPLICATE_IOU = 0.5
_log = structlog.get_logger("agent.learn")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ts REAL NOT NULL,
    camera TEXT NOT NULL,
    frame_id INTEGER NOT NULL,
    part_id TEXT,
    captured_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'labelled', 'rejected')),
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    dhash TEXT NOT NULL,
    file TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    detections TEXT NOT NULL,
    thresholds TEXT NOT NULL,
    labels TEXT
);
CREATE INDEX IF NOT EXISTS entries_created ON entries (created_ts);
"""


class QueueError(ValueError):
    """A request the queue cannot serve (unknown entry id, bad status or format); names the bad value."""


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

    def to_json(self) -> dict[str, Any]:
        """Plain data for the CLI and events."""
        return {
            "id": self.id, "created_at": self.created_at.isoformat(), "camera": self.camera,
            "frame_id": self.frame_id, "part_id": self.part_id, "captured_at": self.captured_at.isoformat(),
            "reason": self.reason, "model": self.model, "status": self.status, "width": self.width,
            "height": self.height, "dhash": f"{self.dhash:016x}", "path": str(self.path), "bytes": self.bytes,
            "thresholds": self.thresholds, "predictions": self.detections.to_json(decimals=2),
            "labels": None if self.labels is None else self.labels.to_json(decimals=2),
        }


@dataclass(frozen=True)
class OfferResult:
    """What `offer()` did: the stored entry, or why the frame was not queued."""

    entry: QueueEntry | None
    skipped: str | None = None

    def __bool__(self) -> bool:
        return self.entry is not None


@dataclass(frozen=True)
class _Recent:
    id: int
    camera: str
    dhash: int
    detections: Detections


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
        self._db = _connect(self.directory / "index.sqlite3")
        self.quota = RateQuota(config.per_minute, config.per_hour, config.per_day, clock=clock)
        self.quota.seed(ts for (ts,) in self._db.execute(
            "SELECT created_ts FROM entries WHERE created_ts > ?", (clock() - 86400.0,)))
        self._recent: deque[_Recent] = deque(self._load_recent(), maxlen=_RECENT_HASHES)
        self._remove_orphans()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----- offering frames ----------------------------------------------------------------------------------------
    def offer(self, frame: Frame, detections: Detections, thresholds: Mapping[str, float],
              flagged: bool | None = None, model: str = "") -> OfferResult:
        """Queue `frame` if a sampler wants it and quota, duplicates and disk allow; never raises on storage errors.

        `flagged` defaults to whether the frame's trigger said the part is bad (`frame.expect == "fail"`).
        """
        self.stats["offered"] += 1
        if not self.cfg.enabled:
            return self._skip("disabled", "queue disabled in config")
        flag = frame.expect == "fail" if flagged is None else flagged
        reasons = [r for s in self.samplers if (r := s.reason(Candidate(detections, thresholds, flag)))]
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
            recent = list(self._recent)
        for other in reversed(recent):
            distance = hamming(image_hash, other.dhash)
            if other.camera == camera and distance <= self.cfg.dedup_max_distance \
                    and same_predictions(detections, other.detections):
                return f"near-duplicate of entry {other.id} (hash distance {distance})"
        return None

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
                 model, width, height, f"{image_hash:016x}", len(png), detections_to_json(detections),
                 json.dumps(dict(thresholds))),
            )
            entry_id = int(cursor.lastrowid or 0)
            name = f"{entry_id:09d}.png"
            _write_atomically(self.frames_dir / name, png)
            self._db.execute("UPDATE entries SET file = ? WHERE id = ?", (name, entry_id))
            self._recent.append(_Recent(entry_id, frame.camera, image_hash, detections))
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
        clauses, params = self._filters(status=status)
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
        gone = set(ids)
        with self._lock:
            kept = [r for r in self._recent if r.id not in gone]
            self._recent.clear()
            self._recent.extend(kept)

    # ----- reading --------------------------------------------------------------------------------------------------
    def get(self, entry_id: int) -> QueueEntry:
        with self._lock:
            row = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise QueueError(f"no queue entry with id {entry_id}")
        return self._entry(row)

    def list(self, status: EntryStatus | None = None, camera: str | None = None,
             limit: int | None = None) -> list[QueueEntry]:
        """Entries oldest first, optionally filtered."""
        clauses, params = self._filters(status=status, camera=camera)
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

    def set_status(self, entry_id: int, status: EntryStatus, labels: Detections | None = None) -> QueueEntry:
        """Record a review outcome (and, for `labelled`, optionally the corrected boxes)."""
        if status not in STATUSES:
            raise QueueError(f"status {status!r}: must be one of {list(STATUSES)}")
        self.get(entry_id)
        with self._lock, self._db:
            self._db.execute("UPDATE entries SET status = ?, labels = ? WHERE id = ?",
                             (status, None if labels is None else detections_to_json(labels), entry_id))
        return self.get(entry_id)

    def set_statuses(self, updates: Sequence[tuple[int, EntryStatus, Detections | None]]) -> None:
        """Several review outcomes in one transaction (a reviewed file is imported whole or not at all)."""
        bad = [status for _, status, _ in updates if status not in STATUSES]
        if bad:
            raise QueueError(f"status {bad[0]!r}: must be one of {list(STATUSES)}")
        rows = [(status, None if labels is None else detections_to_json(labels), entry_id)
                for entry_id, status, labels in updates]
        with self._lock, self._db:
            missing = [entry_id for _, _, entry_id in rows
                       if self._db.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone() is None]
            if missing:
                raise QueueError(f"no queue entry with id {missing[0]}")
            self._db.executemany("UPDATE entries SET status = ?, labels = ? WHERE id = ?", rows)

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def total_bytes(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0])

    def _filters(self, status: str | None = None, camera: str | None = None,
                 ) -> tuple[builtins.list[str], builtins.list[Any]]:
        clauses: builtins.list[str] = []
        params: builtins.list[Any] = []
        if status is not None:
            if status not in STATUSES:
                raise QueueError(f"status {status!r}: must be one of {list(STATUSES)}")
            clauses.append("status = ?")
            params.append(status)
        if camera is not None:
            clauses.append("camera = ?")
            params.append(camera)
        return clauses, params

    def _entry(self, row: sqlite3.Row) -> QueueEntry:
        return QueueEntry(
            id=row["id"], created_at=datetime.fromtimestamp(row["created_ts"], timezone.utc), camera=row["camera"],
            frame_id=row["frame_id"], part_id=row["part_id"], captured_at=datetime.fromisoformat(row["captured_at"]),
            reason=row["reason"], model=row["model"], status=row["status"], width=row["width"],
            height=row["height"], dhash=int(row["dhash"], 16), path=self.frames_dir / row["file"],
            bytes=row["bytes"], detections=detections_from_json(row["detections"]),
            thresholds=json.loads(row["thresholds"]),
            labels=None if row["labels"] is None else detections_from_json(row["labels"]),
        )

    def _load_recent(self) -> builtins.list[_Recent]:
        rows = self._db.execute(
            "SELECT id, camera, dhash, detections FROM entries ORDER BY id DESC LIMIT ?", (_RECENT_HASHES,)
        ).fetchall()
        return [_Recent(r["id"], r["camera"], int(r["dhash"], 16), detections_from_json(r["detections"]))
                for r in reversed(rows)]

    def _remove_orphans(self) -> None:
        """Delete PNGs no row points to (a crash between writing and committing), once they are old enough."""
        known = {r[0] for r in self._db.execute("SELECT file FROM entries")}
        cutoff = time.time() - _ORPHAN_GRACE_S
        removed = 0
        for path in self.frames_dir.iterdir():
            if path.name not in known and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            _log.warning("removed orphan frames from the learning queue", removed=removed)

    # ----- export ---------------------------------------------------------------------------------------------------
    def export(self, out: Path, format: ExportFormat, statuses: Sequence[str] = ("new", "labelled"),
               min_score: float = 0.0) -> Path:
        """Write the entries with the given statuses; returns the annotation file written.

        `out` is a directory (gets `annotations.json` / `annotations.jsonl` and `images/`) or the annotation file
        itself (`*.json` / `*.jsonl`, images beside it in `images/`). Boxes below `min_score` are left out.
        """
        if format not in ("coco", "jsonl"):
            raise QueueError(f"export format {format!r}: must be 'coco' or 'jsonl'")
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise QueueError(f"status {bad[0]!r}: must be one of {list(STATUSES)}")
        suffix = ".json" if format == "coco" else ".jsonl"
        target = Path(out) if Path(out).suffix == suffix else Path(out) / f"annotations{suffix}"
        images_dir = target.parent / "images"
        images_dir.mkdir(parents=True, exist_ok=True)
        entries = [e for e in self.list() if e.status in statuses]
        for entry in entries:
            shutil.copyfile(entry.path, images_dir / entry.path.name)
        labelled = [(entry, _export_boxes(entry, min_score)) for entry in entries]
        text = _coco_text(labelled) if format == "coco" else _jsonl_text(labelled)
        _write_atomically(target, text.encode("utf-8"))
        return target


# ----- export helpers -------------------------------------------------------------------------------------------------
def _export_boxes(entry: QueueEntry, min_score: float) -> Detections:
    boxes = entry.labels if entry.labels is not None else entry.detections
    return boxes[boxes.score >= min_score].sorted_raster()


def _coco_text(entries: Sequence[tuple[QueueEntry, Detections]]) -> str:
    names: list[str] = []
    for _, boxes in entries:
        names.extend(name for name in boxes.class_names if name not in names)
    category = {name: i + 1 for i, name in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for entry, boxes in entries:
        images.append({"id": entry.id, "file_name": f"images/{entry.path.name}", "width": entry.width,
                       "height": entry.height, "camera": entry.camera, "captured_at": entry.captured_at.isoformat(),
                       "reason": entry.reason, "status": entry.status, "model": entry.model})
        for box in boxes:
            x1, y1, x2, y2 = box.xyxy
            annotations.append({"id": len(annotations) + 1, "image_id": entry.id,
                                "category_id": category[box.label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0, "score": box.score})
    coco = {
        "info": {"description": "edge-inspect learning queue export",
                 "date_created": datetime.now(timezone.utc).isoformat()},
        "images": images, "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "defect"} for name, i in category.items()],
    }
    return json.dumps(coco, indent=1)


def _jsonl_text(entries: Sequence[tuple[QueueEntry, Detections]]) -> str:
    lines = [json.dumps({"image": f"images/{entry.path.name}", "prefix": "<OD>", "suffix": boxes.to_loc_text()})
             for entry, boxes in entries]
    return "".join(line + "\n" for line in lines)


# ----- small pure helpers -------------------------------------------------------------------------------------------
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


def encode_png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise QueueError(f"PNG encoding failed for an image of shape {image.shape}")
    return buffer.tobytes()


def detections_to_json(detections: Detections) -> str:
    """Lossless JSON of a Detections value (full-precision boxes and scores)."""
    return json.dumps({
        "class_names": list(detections.class_names), "image_size": list(detections.image_size),
        "xyxy": detections.xyxy.tolist(), "class_id": detections.class_id.tolist(),
        "score": detections.score.tolist(),
    })


def detections_from_json(text: str) -> Detections:
    data = json.loads(text)
    width, height = data["image_size"]
    return Detections(np.asarray(data["xyxy"], dtype=np.float32), np.asarray(data["class_id"], dtype=np.int64),
                      np.asarray(data["score"], dtype=np.float32), tuple(data["class_names"]), (width, height))


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # learning data: losing the last entry on power loss is acceptable
    db.executescript(_SCHEMA)
    return db


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


@contextmanager
def open_queue(state_dir: Path, config: Any) -> Iterator[LearningQueue]:
    """`LearningQueue(state_dir / "queue", config)`, closed on exit."""
    queue = LearningQueue(Path(state_dir) / "queue", config)
    try:
        yield queue
    finally:
        queue.close()
