"""YOLO detection sets: `images/**`, `labels/**` (same relative path, `.txt`) and `data.yaml` (or `classes.txt`).

Each label line is `class_id cx cy w h` with the centre and size as fractions of the image; an empty label file
is a defect-free frame. An image without a label file is an error unless `unlabelled_as_good` takes it as
defect-free (the writer always writes a label file); a label file without an image is reported. The folder names
match in any case (`Images/`, `LABELS/`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agent.detections import Detections
from finetune.data.dataset import Dataset, Progress, no_progress
from finetune.data.files import (
    copy_images,
    find_subdir,
    image_files,
    numbered_lines,
    prepare_output_dir,
    read_class_file,
)
from finetune.data.issues import IssueKind, IssueLog, Location
from finetune.data.validate import RawBox, RawSample, build_dataset

DATA_YAML = "data.yaml"
CLASS_FILE = "classes.txt"


def read_yolo(
    src: Path, skip_invalid: bool = False, progress: Progress = no_progress, *, unlabelled_as_good: bool = False
) -> Dataset:
    """Read a YOLO folder; bad label lines raise `AnnotationError` listing file and line of each."""
    class_names = read_yolo_names(src)
    images_dir = find_subdir(src, ("images",), "YOLO set")
    labels_dir = _labels_dir(src)
    log = IssueLog()
    images = image_files(images_dir)
    raws = [_read_labels(image, labels_dir / image.relative_to(images_dir).with_suffix(".txt"), class_names,
                         unlabelled_as_good) for image in images]
    _report_orphan_labels(labels_dir, images_dir, images, log)
    return build_dataset(raws, class_names, log, skip_invalid, progress, root=images_dir)


def _labels_dir(src: Path) -> Path:
    """`labels/` in any case; when there is none every image lacks its label file (and says so)."""
    try:
        return find_subdir(src, ("labels",), "YOLO set")
    except FileNotFoundError:
        return src / "labels"


def read_yolo_names(src: Path) -> tuple[str, ...]:
    """Class names from `data.yaml` (`names:` as a list or an {id: name} map) or else `classes.txt`."""
    if (src / DATA_YAML).is_file():
        document: Any = yaml.safe_load((src / DATA_YAML).read_text(encoding="utf-8"))
        names = document.get("names") if isinstance(document, dict) else None
        if isinstance(names, dict) and sorted(names) == list(range(len(names))):
            return tuple(str(names[i]) for i in range(len(names)))
        if isinstance(names, list) and names:
            return tuple(str(name) for name in names)
        raise ValueError(f"{src / DATA_YAML}: 'names' must be a list or a {{0: name, 1: name, ...}} map, got {names!r}")
    if (src / CLASS_FILE).is_file():
        return read_class_file(src / CLASS_FILE)
    raise FileNotFoundError(f"no class list for the YOLO set at {src}: expected {DATA_YAML} or {CLASS_FILE}")


def _read_labels(image: Path, label_file: Path, class_names: tuple[str, ...], as_good: bool) -> RawSample:
    raw = RawSample(image, Location(label_file if label_file.is_file() else image))
    if not label_file.is_file():
        raw.without_annotation(label_file, as_good, "label file", "write an empty label file")
        return raw
    for number, text in numbered_lines(label_file):
        if text.strip():
            _parse_line(text, Location(label_file, number), class_names, raw)
    return raw


def _parse_line(text: str, location: Location, class_names: tuple[str, ...], raw: RawSample) -> None:
    tokens = text.split()
    try:
        class_id, values = int(tokens[0]), [float(v) for v in tokens[1:]]
    except ValueError:
        raw.box_problem(location, f"malformed line {text.strip()!r}: expected 'class_id cx cy w h' numbers")
        return
    if len(values) != 4:
        raw.box_problem(location, f"malformed line {text.strip()!r}: expected 5 values, got {len(tokens)}")
        return
    if not 0 <= class_id < len(class_names):
        raw.box_problem(location, f"unknown class id {class_id}; known: 0..{len(class_names) - 1} = "
                        f"{list(class_names)}", IssueKind.UNKNOWN_CLASS)
        return
    cx, cy, w, h = values
    raw.boxes.append(RawBox(class_names[class_id], (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), location, True))


def _report_orphan_labels(labels_dir: Path, images_dir: Path, images: list[Path], log: IssueLog) -> None:
    expected = {labels_dir / image.relative_to(images_dir).with_suffix(".txt") for image in images}
    if not labels_dir.is_dir():
        return
    for label_file in sorted(labels_dir.rglob("*.txt")):
        if label_file not in expected:
            stem = images_dir / label_file.relative_to(labels_dir).with_suffix("")
            log.add(Location(label_file), f"missing image: no {stem}.* for this label file", IssueKind.ORPHAN)


def write_yolo(dataset: Dataset, dst: Path, overwrite: bool = False, progress: Progress = no_progress) -> Path:
    """Write `images/`, `labels/` (one file per image, empty for defect-free frames) and `data.yaml`."""
    prepare_output_dir(dst, overwrite)
    images_dir, labels_dir = dst / "images", dst / "labels"
    paths = copy_images(dataset, images_dir, progress)
    for sample, image in zip(dataset, paths, strict=True):
        label_file = labels_dir / image.relative_to(images_dir).with_suffix(".txt")
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text("".join(f"{line}\n" for line in _label_lines(sample.detections)), encoding="utf-8")
    data = {"path": ".", "train": "images", "val": "images", "nc": len(dataset.class_names),
            "names": list(dataset.class_names)}
    path = dst / DATA_YAML
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _label_lines(detections: Detections) -> list[str]:
    lines = []
    for (x1, y1, x2, y2), class_id in zip(detections.normalized().tolist(), detections.class_id.tolist(), strict=True):
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        lines.append(f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines
