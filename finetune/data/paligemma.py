"""PaliGemma JSONL data sets: `annotations.jsonl` + `classes.txt` + `images/` in one folder, the layout PaliGemma
fine-tuning notebooks and exports use.

One line per image: `{"image": "images/a.png", "prefix": "detect scratch ; hole", "suffix": "<loc0102><loc0051>
<loc0307><loc0204> scratch ; <loc...>x4 hole"}`: four `<locNNNN>` bins 0..1023 in y1 x1 y2 x2 order then the class,
boxes separated by ` ; ` (agent/detector/paligemma/dialect.py); an empty suffix is a defect-free frame.

The prefix asks for the classes, and every line's prefix must ask for all of the set's classes (in any order): a
frame asked about fewer classes says nothing about the others, so reading it as free of them would invent
negatives. The class order comes from `classes.txt` (or `--classes`), else from the first line's prefix.
Florence JSONL <-> PaliGemma JSONL: `edge-inspect data convert DIR OUT --from jsonl --to paligemma` and back; a box
moves by at most half a bin of the coarser grid (Florence's 1000 bins), and Florence -> PaliGemma -> Florence gives
the same bins back.
"""

from __future__ import annotations

from pathlib import Path

from agent.detector.paligemma.dialect import (
    BOX_PATTERN,
    LOC_BINS,
    check_class_names,
    detect_prompt,
    prompt_classes,
    to_answer,
)
from finetune.data.dataset import Dataset, Progress, no_progress
from finetune.data.issues import IssueKind, IssueLog, Location
from finetune.data.jsonl import CLASS_FILE, annotations_file, parse_lines, parse_record, write_lines
from finetune.data.validate import RawBox, RawSample, build_dataset, resolve_classes


def read_paligemma(
    src: Path,
    class_names: tuple[str, ...] | None = None,
    skip_invalid: bool = False,
    progress: Progress = no_progress,
    *,
    discover_classes: bool = False,
) -> Dataset:
    """Read a folder holding `annotations.jsonl` (or the file itself); bad lines raise `AnnotationError`."""
    path = annotations_file(src, "PaliGemma JSONL")
    log = IssueLog()
    asked: dict[int, list[str]] = {}  # id(raw sample) -> the classes its prefix asks for
    raws = parse_lines(path, log, lambda text, location, lines_log: _parse_line(text, location, lines_log, asked))
    names, source = _class_list(class_names, path.parent / CLASS_FILE, raws, asked, discover_classes, log)
    for raw in raws:
        _check_prefix(raw, asked.get(id(raw)), names)
    return build_dataset(raws, names, log, skip_invalid, progress, classes_from=source)


def _class_list(given: tuple[str, ...] | None, class_file: Path, raws: list[RawSample], asked: dict[int, list[str]],
                discover: bool, log: IssueLog) -> tuple[tuple[str, ...], str]:
    """`--classes`, else classes.txt, else the first prefix (the format carries the list), else `resolve_classes`."""
    first = next((asked[id(raw)] for raw in raws if id(raw) in asked), None)
    if given is None and not class_file.is_file() and first is not None:
        return tuple(first), "format"
    return resolve_classes(given, class_file, raws, discover, log)


def _parse_line(text: str, location: Location, log: IssueLog, asked: dict[int, list[str]]) -> RawSample | None:
    parsed = parse_record(text, location, log)
    if parsed is None:
        return None
    record, raw = parsed
    prefix, suffix = record.get("prefix"), record.get("suffix")
    classes = prompt_classes(prefix) if isinstance(prefix, str) else None
    if classes is None:
        raw.problem(location, f"field 'prefix' is {prefix!r}, expected 'detect a ; b' (PaliGemma detection)",
                    IssueKind.MALFORMED)
    else:
        asked[id(raw)] = classes
    if not isinstance(suffix, str):
        raw.problem(location, f"field 'suffix' is {suffix!r}, expected '<loc>x4 class' boxes separated by ' ; '",
                    IssueKind.MALFORMED)
        return raw
    for part in suffix.replace("<eos>", "").split(";") if suffix.strip() else []:
        _parse_box(part.strip(), location, raw)
    return raw


def _parse_box(text: str, location: Location, raw: RawSample) -> None:
    """One `<loc>x4 label` group -> a box as fractions of the image (bin centres), or a problem naming it."""
    match = BOX_PATTERN.fullmatch(text)
    if match is None:
        raw.box_problem(location, f"field 'suffix': cannot parse {text[:60]!r} (expected <locYYYY><locXXXX>"
                                  "<locYYYY><locXXXX> class)", IssueKind.MALFORMED)
        return
    label, (y1, x1, y2, x2) = match.group(5).strip(), [int(g) for g in match.groups()[:4]]
    if not label:
        raw.box_problem(location, f"field 'suffix': box {text!r} has no class", IssueKind.BAD_BOX)
    elif max(y1, x1, y2, x2) >= LOC_BINS:
        raw.box_problem(location, f"field 'suffix': {label!r} has a <locNNNN> above {LOC_BINS - 1}: {text!r}",
                        IssueKind.OUTSIDE)
    else:
        xyxy = tuple((b + 0.5) / LOC_BINS for b in (x1, y1, x2, y2))
        raw.boxes.append(RawBox(label, (xyxy[0], xyxy[1], xyxy[2], xyxy[3]), location, normalized=True, binned=True))


def _check_prefix(raw: RawSample, asked: list[str] | None, names: tuple[str, ...]) -> None:
    if asked is not None and sorted(asked) != sorted(names):
        raw.problem(raw.location, f"field 'prefix' asks for {asked}, but the set's classes are {list(names)}: "
                                  "every line must ask for all of them (a class left out would read as absent)",
                    IssueKind.MALFORMED)


def write_paligemma(dataset: Dataset, dst: Path, overwrite: bool = False, progress: Progress = no_progress) -> Path:
    """Write `dataset` as a PaliGemma JSONL folder (images copied under `images/`); returns the JSONL path."""
    check_class_names(dataset.class_names)
    prompt = detect_prompt(dataset.class_names)
    return write_lines(dataset, dst, overwrite, progress, lambda s: (prompt, to_answer(s.detections.sorted_raster())))
