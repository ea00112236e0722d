"""COCO instances JSON: `annotations.json` + `images/` (bbox = [x, y, width, height] in pixels).

Reading accepts the JSON file itself or a folder holding `annotations.json` (or exactly one other `*.json`);
`file_name` is looked up under `images/` (any case) beside the JSON, then beside the JSON itself. An annotation's
`segmentation` (polygons or RLE) becomes its instance mask; writing stores masks as compressed RLE. Class order
follows the category ids; an image listed without annotations is a defect-free frame. Problems are located by
JSON path (`annotations[3] (id 17)`), since COCO files are often one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.masks import encode_rle
from finetune.data.dataset import Dataset, Progress, no_progress
from finetune.data.files import copy_images, find_subdir, prepare_output_dir
from finetune.data.issues import AnnotationError, AnnotationIssue, IssueKind, IssueLog, Location
from finetune.data.validate import RawBox, RawSample, build_dataset

ANNOTATIONS = "annotations.json"


def read_coco(src: Path, skip_invalid: bool = False, progress: Progress = no_progress) -> Dataset:
    """Read a COCO detection set; every bad image/annotation/category entry is reported (`AnnotationError`)."""
    path = _find_json(src)
    log = IssueLog()
    document = _load_json(path)
    categories = _categories(document.get("categories"), path, log)
    raws = _images(document.get("images"), path, log)
    _attach_annotations(document.get("annotations"), raws, categories, path, log)
    class_names = tuple(categories[key] for key in sorted(categories))
    return build_dataset(list(raws.values()), class_names, log, skip_invalid, progress)


def _find_json(src: Path) -> Path:
    if src.is_file():
        return src
    if (src / ANNOTATIONS).is_file():
        return src / ANNOTATIONS
    candidates = sorted(src.glob("*.json")) if src.is_dir() else []
    if len(candidates) != 1:
        raise FileNotFoundError(f"no COCO JSON at {src}: expected {ANNOTATIONS} or exactly one *.json, "
                                f"found {[c.name for c in candidates]}")
    return candidates[0]


def _load_json(path: Path) -> dict[str, Any]:
    """The parsed document; a file that is not a JSON object stops reading at once (nothing else can be checked)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        message = f"malformed JSON: {error.msg} at column {error.colno}"
        raise AnnotationError([AnnotationIssue(Location(path, error.lineno), message, IssueKind.MALFORMED)]) from error
    if not isinstance(document, dict):
        message = "top level is not a JSON object with 'images', 'annotations', 'categories'"
        raise AnnotationError([AnnotationIssue(Location(path), message, IssueKind.MALFORMED)])
    return document


def _entries(value: Any, key: str, path: Path, log: IssueLog) -> list[Any]:
    if not isinstance(value, list):
        log.add(Location(path, where=key), f"'{key}' is missing or not a list", IssueKind.MALFORMED)
        return []
    return value


def _has_fields(entry: Any, **types: type) -> bool:
    return isinstance(entry, dict) and all(isinstance(entry.get(key), kind) for key, kind in types.items())


def _categories(value: Any, path: Path, log: IssueLog) -> dict[int, str]:
    categories: dict[int, str] = {}
    for i, entry in enumerate(_entries(value, "categories", path, log)):
        location = Location(path, where=f"categories[{i}]")
        if not _has_fields(entry, id=int, name=str):
            log.add(location, f"category needs an integer 'id' and a string 'name', got {entry!r}", IssueKind.MALFORMED)
        elif entry["id"] in categories or entry["name"] in categories.values():
            log.add(location, f"duplicate category id {entry['id']} or name {entry['name']!r}", IssueKind.DUPLICATE)
        else:
            categories[entry["id"]] = entry["name"]
    return categories


def _images(value: Any, path: Path, log: IssueLog) -> dict[int, RawSample]:
    raws: dict[int, RawSample] = {}
    folder = _images_folder(path)
    for i, entry in enumerate(_entries(value, "images", path, log)):
        location = Location(path, where=f"images[{i}]")
        if not _has_fields(entry, id=int, file_name=str):
            log.add(location, f"image needs an integer 'id' and a string 'file_name', got {entry!r}",
                    IssueKind.MALFORMED)
            continue
        if entry["id"] in raws:
            log.add(location, f"duplicate image id {entry['id']}", IssueKind.DUPLICATE)
            continue
        location = Location(path, where=f"images[{i}] (id {entry['id']})")
        raw = RawSample(_image_path(path, folder, entry["file_name"]), location)
        width, height = entry.get("width"), entry.get("height")
        if isinstance(width, int) and isinstance(height, int):
            raw.declared_size = (width, height)
        raws[entry["id"]] = raw
    return raws


def _images_folder(json_path: Path) -> Path | None:
    """`images/` (any case) beside the JSON, if there is one."""
    try:
        return find_subdir(json_path.parent, ("images",), "COCO set")
    except FileNotFoundError:
        return None


def _image_path(json_path: Path, images_folder: Path | None, file_name: str) -> Path:
    under_images = images_folder / file_name if images_folder is not None else None
    return under_images if under_images is not None and under_images.exists() else json_path.parent / file_name


def _attach_annotations(
    value: Any, raws: dict[int, RawSample], categories: dict[int, str], path: Path, log: IssueLog
) -> None:
    for i, entry in enumerate(_entries(value, "annotations", path, log)):
        ident = entry.get("id") if isinstance(entry, dict) else None
        location = Location(path, where=f"annotations[{i}] (id {ident})")
        if not isinstance(entry, dict) or not isinstance(entry.get("image_id"), int) or entry["image_id"] not in raws:
            image_id = entry.get("image_id") if isinstance(entry, dict) else None
            log.add(location, f"image_id {image_id!r} is not in 'images'", IssueKind.ORPHAN)
            continue
        raw = raws[entry["image_id"]]
        bbox = entry.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
            raw.box_problem(location, f"'bbox' must be [x, y, width, height] numbers, got {bbox!r}")
            continue
        category = entry.get("category_id")
        label = categories.get(category) if isinstance(category, int) else None
        if label is None:
            raw.box_problem(location, f"unknown class: category_id {category!r} is not in 'categories'",
                            IssueKind.UNKNOWN_CLASS)
            continue
        x, y, w, h = (float(v) for v in bbox)
        raw.boxes.append(RawBox(label, (x, y, x + w, y + h), location, segmentation=entry.get("segmentation") or None))


def write_coco(dataset: Dataset, dst: Path, overwrite: bool = False, progress: Progress = no_progress) -> Path:
    """Write `dataset` as `annotations.json` + `images/` (category ids 1..K in class order); returns the JSON path."""
    prepare_output_dir(dst, overwrite)
    images_dir = dst / "images"
    paths = copy_images(dataset, images_dir, progress)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, (sample, image) in enumerate(zip(dataset, paths, strict=True), start=1):
        w, h = sample.image_size
        images.append({"id": image_id, "file_name": image.relative_to(images_dir).as_posix(), "width": w, "height": h})
        masks = sample.detections.mask
        rles = encode_rle(masks) if masks is not None else None
        for i, box in enumerate(sample.detections):
            x1, y1, x2, y2 = box.xyxy
            annotation = {
                "id": len(annotations) + 1, "image_id": image_id, "category_id": box.class_id + 1,
                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                "area": round((x2 - x1) * (y2 - y1), 3), "iscrowd": 0,
            }
            if masks is not None and rles is not None:  # an instance mask: COCO's compressed RLE, and its area
                annotation.update(segmentation=rles[i], area=int(masks[i].sum()))
            annotations.append(annotation)
    categories = [{"id": i + 1, "name": name, "supercategory": "defect"} for i, name in enumerate(dataset.class_names)]
    path = dst / ANNOTATIONS
    document = {"images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return path
