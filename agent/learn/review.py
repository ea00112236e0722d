"""Reading reviewed labels back into the learning queue (`edge-inspect queue import`).

The reviewer edits what `queue export` wrote, in Label Studio, CVAT or a text editor, and exports it again as COCO
(`annotations.json`) or Florence JSONL. Each image is matched to its queue entry by the frame file name the export
gave it (`images/000000042.png` -> entry 42); tools that prefix or relocate uploads (Label Studio's
`upload/1/3f2a9c1e-000000042.png`) still end in that name. What each image becomes:

- listed, with boxes changed from what the export wrote: `labelled` with exactly those boxes (no boxes = a
  reviewed defect-free frame), verified, with the importer as reviewer;
- listed with exactly the boxes the export wrote (the model's untouched suggestions, or labels nobody verified):
  left as it was and unverified, never labelled: nothing says a person looked (`agent.learn.untouched`); the
  command says which entries these are. A frame whose labels a person already verified stays as it was;
- `"status": "rejected"` on the image (COCO image object or JSONL line): `rejected`, never trained on;
- not listed: unchanged (a `new` entry stays unlabelled and is never trained on).

Every problem is collected with the line (JSONL) or JSON path (COCO) that holds it; nothing is applied unless the
whole file is valid.
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.detections import Detections
from agent.detector.loc import LOC_BINS, bins_to_xyxy
from agent.learn.entry import QueueEntry, QueueError, ReviewRecord
from agent.learn.queue import LearningQueue
from agent.learn.untouched import is_untouched

_ENTRY_FILE = re.compile(r"(\d{9})\.png$")
_LOC_GROUP = re.compile(r"\s*([^<>]*?)\s*<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>\s*")


class ReviewError(ValueError):
    """Problems in a reviewed file; `problems` has one `where: what` line each."""

    def __init__(self, source: Path, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{source}: {len(self.problems)} problem(s), nothing imported:\n{shown}{more}")


@dataclass(frozen=True)
class Review:
    """One reviewed image: the queue entry it belongs to, where it was read, and the verdict."""

    entry_id: int
    where: str
    rejected: bool
    labels: list[str]
    boxes: list[tuple[float, float, float, float]]  # pixels (COCO) or fractions of the frame (JSONL)
    normalised: bool


def entry_id_of(file_name: str) -> int | None:
    """The queue entry id in an exported frame's name (`.../000000042.png` -> 42), or None."""
    match = _ENTRY_FILE.search(Path(file_name).name)
    return int(match.group(1)) if match else None


def read_review(path: Path, format: str) -> list[Review]:
    """Parse a reviewed COCO JSON or Florence JSONL file; raises `ReviewError` listing every problem."""
    if format not in ("coco", "jsonl"):
        raise ValueError(f"import format {format!r}: must be 'coco' or 'jsonl'")
    path = Path(path)
    if path.is_dir():
        path = path / ("annotations.json" if format == "coco" else "annotations.jsonl")
    if not path.is_file():
        raise FileNotFoundError(f"no reviewed {format} file at {path}")
    problems: list[str] = []
    reviews = _read_coco(path, problems) if format == "coco" else _read_jsonl(path, problems)
    _check_duplicates(reviews, problems)
    if problems:
        raise ReviewError(path, problems)
    return reviews


def _check_duplicates(reviews: Sequence[Review], problems: list[str]) -> None:
    first: dict[int, str] = {}
    for review in reviews:
        if review.entry_id in first:
            problems.append(f"{review.where}: entry {review.entry_id} is listed twice "
                            f"(first at {first[review.entry_id]})")
        first.setdefault(review.entry_id, review.where)


# ----- JSONL --------------------------------------------------------------------------------------------------------
def _read_jsonl(path: Path, problems: list[str]) -> list[Review]:
    reviews = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.strip():
            review = _jsonl_line(text, f"line {number}", problems)
            if review is not None:
                reviews.append(review)
    return reviews


def _jsonl_line(text: str, where: str, problems: list[str]) -> Review | None:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: malformed JSON: {exc.msg} at column {exc.colno}")
        return None
    if not isinstance(record, dict) or not isinstance(record.get("image"), str):
        problems.append(f"{where}: field 'image' is missing or not a string")
        return None
    entry_id = entry_id_of(record["image"])
    if entry_id is None:
        problems.append(f"{where}: image {record['image']!r} is not a queue frame name (NNNNNNNNN.png)")
        return None
    rejected = record.get("status") == "rejected"
    suffix = record.get("suffix", "")
    if not isinstance(suffix, str):
        problems.append(f"{where} (entry {entry_id}): field 'suffix' must be a string of label<loc_N>x4 groups")
        return None
    labels, boxes = _parse_suffix(suffix, f"{where} (entry {entry_id})", problems)
    return Review(entry_id, f"{where} (entry {entry_id})", rejected, labels, boxes, normalised=True)


def _parse_suffix(suffix: str, where: str, problems: list[str]
                  ) -> tuple[list[str], list[tuple[float, float, float, float]]]:
    text = suffix.replace("</s>", "").replace("<s>", "")
    labels: list[str] = []
    boxes: list[tuple[float, float, float, float]] = []
    position = 0
    while position < len(text):
        match = _LOC_GROUP.match(text, position)
        if match is None:
            problems.append(f"{where}: cannot parse suffix at character {position}: {text[position:position + 40]!r}")
            break
        bins = [int(g) for g in match.groups()[1:]]
        position = match.end()
        if max(bins) >= LOC_BINS or not match.group(1):
            problems.append(f"{where}: box {match.group(0).strip()!r} needs a label and <loc_N> below {LOC_BINS}")
            continue
        labels.append(match.group(1))
        x1, y1, x2, y2 = (float(v) for v in bins_to_xyxy(np.asarray([bins]), (1, 1))[0])
        boxes.append((x1, y1, x2, y2))
    return labels, boxes


# ----- COCO ---------------------------------------------------------------------------------------------------------
def _read_coco(path: Path, problems: list[str]) -> list[Review]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReviewError(path, [f"line {exc.lineno}: malformed JSON: {exc.msg}"]) from None
    if not isinstance(document, dict):
        raise ReviewError(path, ["top level is not an object with 'images', 'annotations', 'categories'"])
    categories = _coco_categories(document.get("categories"), problems)
    images = _coco_images(document.get("images"), problems)
    boxes: dict[int, list[tuple[str, tuple[float, float, float, float]]]] = {key: [] for key in images}
    for i, ann in enumerate(document.get("annotations") or []):
        _coco_annotation(ann, f"annotations[{i}]", images, categories, boxes, problems)
    return [Review(entry_id, where, rejected, [label for label, _ in boxes[image_id]],
                   [box for _, box in boxes[image_id]], normalised=False)
            for image_id, (entry_id, where, rejected) in images.items()]


def _coco_categories(value: Any, problems: list[str]) -> dict[int, str]:
    categories: dict[int, str] = {}
    for i, cat in enumerate(value if isinstance(value, list) else []):
        if isinstance(cat, dict) and isinstance(cat.get("id"), int) and isinstance(cat.get("name"), str):
            categories[cat["id"]] = cat["name"]
        else:
            problems.append(f"categories[{i}]: needs an integer 'id' and a string 'name', got {cat!r}")
    if not isinstance(value, list):
        problems.append("'categories' is missing or not a list")
    return categories


def _coco_images(value: Any, problems: list[str]) -> dict[int, tuple[int, str, bool]]:
    images: dict[int, tuple[int, str, bool]] = {}
    if not isinstance(value, list):
        problems.append("'images' is missing or not a list")
        return images
    for i, image in enumerate(value):
        where = f"images[{i}]"
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) \
                or not isinstance(image.get("file_name"), str):
            problems.append(f"{where}: needs an integer 'id' and a string 'file_name'")
            continue
        entry_id = entry_id_of(image["file_name"])
        if entry_id is None:
            problems.append(f"{where}: file_name {image['file_name']!r} is not a queue frame name (NNNNNNNNN.png)")
            continue
        images[image["id"]] = (entry_id, f"{where} (entry {entry_id})", image.get("status") == "rejected")
    return images


_Boxes = dict[int, list[tuple[str, tuple[float, float, float, float]]]]


def _coco_annotation(ann: Any, where: str, images: Mapping[int, tuple[int, str, bool]],
                     categories: Mapping[int, str], boxes: _Boxes, problems: list[str]) -> None:
    if not isinstance(ann, dict) or ann.get("image_id") not in images:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        problems.append(f"{where}: image_id {image_id!r} is not in 'images'")
        return
    entry_where = f"{where} (entry {images[ann['image_id']][0]})"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        problems.append(f"{entry_where}: 'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
        return
    if ann.get("category_id") not in categories:
        problems.append(f"{entry_where}: category_id {ann.get('category_id')!r} is not in 'categories'")
        return
    x, y, w, h = (float(v) for v in bbox)
    boxes[ann["image_id"]].append((categories[ann["category_id"]], (x, y, x + w, y + h)))


# ----- to Detections ------------------------------------------------------------------------------------------------
def review_detections(review: Review, class_names: Sequence[str], image_size: tuple[int, int]) -> Detections:
    """The reviewed boxes in pixels of the entry's frame; unknown classes or boxes off the frame raise ValueError."""
    unknown = sorted({label for label in review.labels if label not in class_names})
    if unknown:
        raise ValueError(f"{review.where}: unknown class(es) {unknown}; the model's classes are {list(class_names)}")
    width, height = image_size
    scale = np.array([width, height, width, height], dtype=np.float64) if review.normalised else np.ones(4)
    xyxy = np.asarray(review.boxes, dtype=np.float64).reshape(-1, 4) * scale
    bad = (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1]) | (xyxy[:, :2] < -0.5).any(1) \
        | (xyxy[:, 2] > width + 0.5) | (xyxy[:, 3] > height + 0.5)
    if bad.any():
        box = [round(float(v), 1) for v in xyxy[int(np.argmax(bad))]]
        raise ValueError(f"{review.where}: box {box} is empty or outside the {width}x{height} frame")
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    return Detections.from_labels(review.labels, xyxy, class_names, image_size)


@dataclass
class ImportOutcome:
    """What an import did. `untouched`: entries whose boxes in the file are still what the export wrote (the
    model's suggestions, or labels nobody verified): left as they were and unverified, never made labels.
    `unchanged`: entries a person had already reviewed, the same in the file: left as they were."""

    labelled: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    untouched: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)


def importer_name() -> str:
    """Who runs the import (the login name), recorded as the reviewer of the frames the file changed."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "queue import"


def apply_review(queue: LearningQueue, reviews: Sequence[Review], source: Path = Path("<review>"),
                 reviewer: str | None = None) -> ImportOutcome:
    """Check every review against its entry, then record the decisions in one transaction, with `reviewer`
    (default: `importer_name()`) as the person who made them."""
    who = reviewer or importer_name()
    problems: list[str] = []
    outcome = ImportOutcome()
    records: list[ReviewRecord] = []
    for review in reviews:
        try:
            entry = queue.get(review.entry_id)
            record = _decide(review, entry, who, outcome)
        except QueueError:
            problems.append(f"{review.where}: no queue entry {review.entry_id} (purged or evicted?)")
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if record is not None:
                records.append(record)
    if problems:
        raise ReviewError(source, problems)
    queue.record_reviews(records)
    return outcome


def _decide(review: Review, entry: QueueEntry, reviewer: str, outcome: ImportOutcome) -> ReviewRecord | None:
    """The record one reviewed image asks for (None: leave the entry as it is), noted in `outcome`."""
    if review.rejected:
        if entry.status == "rejected":
            outcome.unchanged.append(entry.id)
            return None
        outcome.rejected.append(entry.id)
        return ReviewRecord(entry.id, "rejected", None, reviewer)
    labels = review_detections(review, entry.detections.class_names, (entry.width, entry.height))
    shown = entry.labels if entry.labels is not None else entry.detections
    if is_untouched(labels, shown):
        (outcome.unchanged if entry.verified else outcome.untouched).append(entry.id)
        return None
    outcome.labelled.append(entry.id)
    return ReviewRecord(entry.id, "labelled", labels, reviewer)
