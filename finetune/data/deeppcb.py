"""DeepPCB's own layout (tangsanli5201/DeepPCB; see ../shared/README.md).

`PCBData/trainval.txt` and `test.txt` list `group{G}/{G}/{ID}.jpg group{G}/{G}_not/{ID}.txt`, but the files on
disk are `{ID}_test.jpg` (with defects) and `{ID}_temp.jpg` (defect-free template of the same spot); this reader
maps the listed name to `_test.jpg` (or uses it as written when such a file exists). Box lines are
`x1 y1 x2 y2 type` (spaces; the upstream README says commas, so both are accepted), type 1..6. With
`include_templates` each template becomes a sample with no boxes: the known-good frames false-reject checks need.
"""

from __future__ import annotations

import re
from pathlib import Path

from finetune.data.dataset import Dataset, Progress, no_progress
from finetune.data.files import find_subdir, numbered_lines
from finetune.data.issues import IssueKind, IssueLog, Location
from finetune.data.validate import RawBox, RawSample, build_dataset

CLASS_NAMES: tuple[str, ...] = ("open", "short", "mousebite", "spur", "spurious_copper", "pin_hole")
SPLITS: dict[str, tuple[str, ...]] = {"trainval": ("trainval.txt",), "test": ("test.txt",),
                                      "all": ("trainval.txt", "test.txt")}
_SEPARATORS = re.compile(r"[,\s]+")


def read_deeppcb(
    src: Path,
    split: str = "all",
    include_templates: bool = False,
    skip_invalid: bool = False,
    progress: Progress = no_progress,
) -> Dataset:
    """Read a split of DeepPCB from the data set folder (the one holding `PCBData/`) or `PCBData/` itself."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {list(SPLITS)}")
    root = _pcbdata(src)
    log = IssueLog()
    raws: list[RawSample] = []
    for list_name in SPLITS[split]:
        list_file = root / list_name
        if not list_file.is_file():
            raise FileNotFoundError(f"no DeepPCB split list {list_file}")
        raws += _read_split(list_file, root, include_templates, log)
    return build_dataset(raws, CLASS_NAMES, log, skip_invalid, progress, root=root)


def _pcbdata(src: Path) -> Path:
    """`PCBData/` (any case) inside `src`, or `src` itself."""
    try:
        return find_subdir(src, ("PCBData",), "DeepPCB set")
    except FileNotFoundError:
        return src


def _read_split(list_file: Path, root: Path, include_templates: bool, log: IssueLog) -> list[RawSample]:
    raws: list[RawSample] = []
    for number, text in numbered_lines(list_file):
        if not text.strip():
            continue
        location = Location(list_file, number)
        fields = text.split()
        if len(fields) != 2:
            log.add(location, f"malformed line {text.strip()!r}: expected 'IMAGE ANNOTATION'", IssueKind.MALFORMED)
            continue
        listed_image, annotation = root / fields[0], root / fields[1]
        raws.append(_read_boxes(defect_image_path(listed_image), annotation, location))
        if include_templates:
            raws.append(RawSample(template_image_path(listed_image), location))
    return raws


def defect_image_path(listed: Path) -> Path:
    """`{ID}.jpg` as listed -> `{ID}_test.jpg` on disk (unless the listed file itself exists)."""
    if listed.is_file() or listed.stem.endswith("_test"):
        return listed
    return listed.with_name(f"{listed.stem}_test{listed.suffix}")


def template_image_path(listed: Path) -> Path:
    """`{ID}.jpg` (or `{ID}_test.jpg`) as listed -> the defect-free `{ID}_temp.jpg`."""
    stem = listed.stem.removesuffix("_test")
    return listed.with_name(f"{stem}_temp{listed.suffix}")


def _read_boxes(image: Path, annotation: Path, listed_at: Location) -> RawSample:
    raw = RawSample(image, listed_at)
    if not annotation.is_file():
        raw.problem(listed_at, f"missing annotation file {annotation}", IssueKind.NO_ANNOTATION)
        return raw
    for number, text in numbered_lines(annotation):
        if text.strip():
            _parse_box_line(text, Location(annotation, number), raw)
    return raw


def _parse_box_line(text: str, location: Location, raw: RawSample) -> None:
    fields = [f for f in _SEPARATORS.split(text.strip()) if f]
    try:
        values = [int(f) for f in fields]
    except ValueError:
        raw.box_problem(location, f"malformed line {text.strip()!r}: expected integers 'x1 y1 x2 y2 type'")
        return
    if len(values) != 5:
        raw.box_problem(location, f"malformed line {text.strip()!r}: expected 5 values, got {len(values)}")
        return
    x1, y1, x2, y2, kind = values
    if not 1 <= kind <= len(CLASS_NAMES):
        raw.box_problem(location, f"unknown class: type {kind} (expected 1..{len(CLASS_NAMES)} = {list(CLASS_NAMES)})",
                        IssueKind.UNKNOWN_CLASS)
        return
    raw.boxes.append(RawBox(CLASS_NAMES[kind - 1], (float(x1), float(y1), float(x2), float(y2)), location))
