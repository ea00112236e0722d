"""Florence JSONL data sets: `annotations.jsonl` + `classes.txt` + `images/` in one folder.

One line per image: `{"image": "images/a.png", "prefix": "<OD>", "suffix": "scratch<loc_1><loc_2><loc_3><loc_4>..."}`
with image paths relative to the JSONL's folder and coordinates as `<loc_N>` bins 0..999 (see `agent.detector.loc`).
`classes.txt` (or `--classes`) keeps the class order; taking the labels in first-seen order instead must be asked
for (`discover_classes`), so a misspelt label cannot silently become a class. An empty suffix is a defect-free frame.
Lines of the region tasks (`<DENSE_REGION_CAPTION>`, `<CAPTION_TO_PHRASE_GROUNDING>phrase`) are read and written by
`finetune/data/tasks.py` into `Dataset.tasks`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.detector.loc import LOC_BINS, to_loc_text
from finetune.data.dataset import Dataset, Progress, Sample, TaskSample, no_progress
from finetune.data.files import copy_images, numbered_lines, prepare_output_dir, write_class_file
from finetune.data.issues import IssueKind, IssueLog, Location
from finetune.data.tasks import TASK_TOKENS, RawTaskLine, build_task_samples, parse_task_line, suffix_runs, task_of
from finetune.data.validate import RawBox, RawSample, build_dataset, resolve_classes

ANNOTATIONS = "annotations.jsonl"
CLASS_FILE = "classes.txt"
PREFIX = "<OD>"
_GROUP = re.compile(r"\s*([^<>]*?)\s*<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>\s*")


def read_jsonl(
    src: Path,
    class_names: tuple[str, ...] | None = None,
    skip_invalid: bool = False,
    progress: Progress = no_progress,
    *,
    discover_classes: bool = False,
) -> Dataset:
    """Read a folder holding `annotations.jsonl` (or the .jsonl file itself); bad lines raise `AnnotationError`.
    `<OD>` lines are the detection samples; region-caption and phrase-grounding lines become task samples."""
    path = annotations_file(src, "Florence JSONL")
    log = IssueLog()
    task_lines: list[RawTaskLine] = []
    raws = parse_lines(path, log, lambda text, location, lg: _od_line(text, location, lg, task_lines))
    class_file = path.parent / CLASS_FILE
    if class_names is None and not raws and task_lines and not class_file.is_file():
        class_names = ()  # region-task lines only: captions and phrases are not classes, no class list is needed
    names, source = resolve_classes(class_names, class_file, raws, discover_classes, log)
    tasks, dropped = build_task_samples(task_lines, log, progress)
    return build_dataset(raws, names, log, skip_invalid, progress, classes_from=source, tasks=tasks,
                         dropped_task_lines=dropped)


def annotations_file(src: Path, what: str) -> Path:
    """`src/annotations.jsonl`, or `src` itself when it is the file; FileNotFoundError naming `what` is missing."""
    path = src / ANNOTATIONS if src.is_dir() else src
    if not path.is_file():
        raise FileNotFoundError(f"no {what} annotations at {path}")
    return path


LineParser = Callable[[str, Location, IssueLog], RawSample | None]


def parse_lines(path: Path, log: IssueLog, parse: LineParser) -> list[RawSample]:
    """Every non-blank line through `parse` (Florence's, which sets region-task lines aside, or PaliGemma's); the
    first line of an image wins, a later one is a logged duplicate."""
    raws: list[RawSample] = []
    first_line: dict[Path, int] = {}
    for number, text in numbered_lines(path):
        if not text.strip():
            continue
        raw = parse(text, Location(path, number), log)
        if raw is None:
            continue
        if raw.image in first_line:
            log.add(raw.location, f"duplicate entry for image {raw.image} (first on line {first_line[raw.image]})",
                    IssueKind.DUPLICATE)
            continue
        first_line[raw.image] = number
        raws.append(raw)
    return raws


def parse_record(text: str, location: Location, log: IssueLog) -> tuple[dict[str, Any], RawSample] | None:
    """A line's JSON object and its image (relative to the JSONL's folder); None, logged, when it has neither."""
    try:
        record: Any = json.loads(text)
    except json.JSONDecodeError as error:
        log.add(location, f"malformed JSON: {error.msg} at column {error.colno}", IssueKind.MALFORMED)
        return None
    if not isinstance(record, dict) or not isinstance(record.get("image"), str) or not record["image"]:
        log.add(location, "field 'image' is missing or not a non-empty string", IssueKind.MALFORMED)
        return None
    return record, RawSample(location.file.parent / record["image"], location)


def _od_line(text: str, location: Location, log: IssueLog, task_lines: list[RawTaskLine]) -> RawSample | None:
    """A detection line, or None with a region-task line set aside in `task_lines` (one image may have both)."""
    raw = _parse_line(text, location, log)
    if isinstance(raw, RawTaskLine):
        task_lines.append(raw)
        return None
    return raw


def _parse_line(text: str, location: Location, log: IssueLog) -> RawSample | RawTaskLine | None:
    parsed = parse_record(text, location, log)
    if parsed is None:
        return None
    record, raw = parsed
    prefix, suffix = record.get("prefix", PREFIX), record.get("suffix")
    task = task_of(prefix) if isinstance(prefix, str) else None
    if task is not None:
        return parse_task_line(raw.image, *task, suffix, location)
    if prefix != PREFIX:
        raw.problem(location, f"field 'prefix' is {prefix!r}, expected one of {[PREFIX, *TASK_TOKENS]} (object "
                              "detection, region captions, phrase grounding + the phrase)", IssueKind.MALFORMED)
    if not isinstance(suffix, str):
        raw.problem(location, f"field 'suffix' is {suffix!r}, expected a string of label<loc_N>x4 groups",
                    IssueKind.MALFORMED)
    else:
        raw.boxes, problems = _parse_suffix(suffix, location)
        for kind, message in problems:
            if kind is IssueKind.MALFORMED:
                raw.problem(location, message, kind)
            else:
                raw.box_problem(location, message, kind)
    return raw


def _parse_suffix(suffix: str, location: Location) -> tuple[list[RawBox], list[tuple[IssueKind, str]]]:
    """Boxes as fractions of the image (bin centres, as `agent.detector.loc.dequantize` reads them) + problems."""
    boxes: list[RawBox] = []
    matches, unparsed = suffix_runs(suffix, _GROUP)
    problems: list[tuple[IssueKind, str]] = []
    for match in matches:
        label, bins = match.group(1), [int(g) for g in match.groups()[1:]]
        if not label:
            problems.append((IssueKind.BAD_BOX, f"field 'suffix': box {bins} has no label (character {match.start()})"))
        elif max(bins) >= LOC_BINS:
            message = f"field 'suffix': {label!r} has a <loc_N> above {LOC_BINS - 1}: {bins}"
            problems.append((IssueKind.OUTSIDE, message))
        else:
            fractions = tuple((b + 0.5) / LOC_BINS for b in bins)
            xyxy = (fractions[0], fractions[1], fractions[2], fractions[3])
            boxes.append(RawBox(label, xyxy, location, normalized=True, binned=True))
    if unparsed is not None:
        problems.append((IssueKind.MALFORMED, unparsed))
    return boxes, problems


def write_jsonl(dataset: Dataset, dst: Path, overwrite: bool = False, progress: Progress = no_progress) -> Path:
    """Write `dataset` as a Florence JSONL folder (images copied under `images/`); returns the JSONL path."""
    check_class_names(dataset.class_names)
    return write_lines(dataset, dst, overwrite, progress, lambda s: (PREFIX, to_loc_text(s.detections.sorted_raster())))


def write_lines(dataset: Dataset, dst: Path, overwrite: bool, progress: Progress,
                texts: Callable[[Sample], tuple[str, str]]) -> Path:
    """`annotations.jsonl` (one `{"image", "prefix", "suffix"}` line per sample, `texts` giving prefix and suffix),
    `classes.txt` and the images copied under `images/`; returns the JSONL path."""
    prepare_output_dir(dst, overwrite)
    images = copy_images(dataset, dst / "images", progress)
    lines = []
    items: list[Sample | TaskSample] = [*dataset.samples, *dataset.tasks]  # region-task lines after the OD ones
    for sample, image in zip(items, images, strict=True):
        prefix, suffix = texts(sample) if isinstance(sample, Sample) \
            else (sample.prompt, sample.target(sample.detections.sorted_raster()))
        lines.append(json.dumps({"image": image.relative_to(dst).as_posix(), "prefix": prefix, "suffix": suffix}))
    path = dst / ANNOTATIONS
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    write_class_file(dst / CLASS_FILE, dataset.class_names)
    return path


def check_class_names(class_names: tuple[str, ...]) -> None:
    """Names must survive the `label<loc_N>` text: non-empty, no '<' or '>', no surrounding spaces or newlines."""
    for name in class_names:
        if not name or name != name.strip() or any(c in name for c in "<>\n\r"):
            raise ValueError(f"class name {name!r} cannot be written as Florence text (empty, spaces, '<', '>')")
