"""Exports of the learning queue for review and training, with the predictions as pre-labels unless an entry
carries reviewed labels:

- COCO: `annotations.json` + `images/`, loadable by pycocotools / faster-coco-eval;
- Florence JSONL: `{"image", "prefix": "<OD>", "suffix": "label<loc_..>..."}` per line.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from agent.detections import Detections
from agent.detector.loc import to_loc_text
from agent.learn.entry import QueueEntry, QueueError, check_statuses
from agent.learn.frames import write_atomically

ExportFormat = Literal["coco", "jsonl"]


def export_entries(entries: Sequence[QueueEntry], out: Path, format: ExportFormat,
                   statuses: Sequence[str] = ("new", "labelled"), min_score: float = 0.0) -> Path:
    """Write the `entries` with the given statuses; returns the annotation file written.

    `out` is a directory (gets `annotations.json` / `annotations.jsonl` and `images/`) or the annotation file
    itself (`*.json` / `*.jsonl`, images beside it in `images/`). Boxes below `min_score` are left out.
    """
    if format not in ("coco", "jsonl"):
        raise QueueError(f"export format {format!r}: must be 'coco' or 'jsonl'")
    check_statuses(statuses)
    suffix = ".json" if format == "coco" else ".jsonl"
    target = Path(out) if Path(out).suffix == suffix else Path(out) / f"annotations{suffix}"
    images_dir = target.parent / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    chosen = [e for e in entries if e.status in statuses]
    for entry in chosen:
        shutil.copyfile(entry.path, images_dir / entry.path.name)
    labelled = [(entry, export_boxes(entry, min_score)) for entry in chosen]
    text = coco_text(labelled) if format == "coco" else jsonl_text(labelled)
    write_atomically(target, text.encode("utf-8"))
    if format == "jsonl":  # JSONL names no classes: readers take their order from classes.txt beside it
        names = "".join(f"{name}\n" for name in _categories(boxes for _, boxes in labelled))
        write_atomically(target.parent / "classes.txt", names.encode("utf-8"))
    return target


def export_boxes(entry: QueueEntry, min_score: float) -> Detections:
    """The reviewed labels, else the predictions, scoring at least `min_score`, in reading order."""
    boxes = entry.labels if entry.labels is not None else entry.detections
    return boxes.above({}, default=min_score).sorted_raster()


def coco_text(entries: Sequence[tuple[QueueEntry, Detections]]) -> str:
    """A COCO document: one image per entry (with its queue metadata), one annotation per box."""
    category = _categories(boxes for _, boxes in entries)
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


def _categories(all_boxes: Iterable[Detections]) -> dict[str, int]:
    """COCO category ids (from 1) for every class name, in the order the entries first name them."""
    names: list[str] = []
    for boxes in all_boxes:
        names.extend(name for name in boxes.class_names if name not in names)
    return {name: i + 1 for i, name in enumerate(names)}


def jsonl_text(entries: Sequence[tuple[QueueEntry, Detections]]) -> str:
    """Florence `<OD>` JSONL, one line per entry."""
    lines = [json.dumps({"image": f"images/{entry.path.name}", "prefix": "<OD>", "suffix": to_loc_text(boxes)})
             for entry, boxes in entries]
    return "".join(line + "\n" for line in lines)
