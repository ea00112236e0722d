"""Florence JSONL lines of the region tasks, beside the `<OD>` lines of the same file (see docs/data.md):

    {"image": "images/a.png", "prefix": "<DENSE_REGION_CAPTION>",
     "suffix": "dark scratch on the weave<loc_10><loc_20><loc_300><loc_40>hole<loc_500><loc_500><loc_520><loc_530>"}
    {"image": "images/a.png", "prefix": "<CAPTION_TO_PHRASE_GROUNDING>scratch",
     "suffix": "scratch<loc_10><loc_20><loc_300><loc_40><loc_600><loc_50><loc_700><loc_90>"}

- a region caption is free text (no `<`, `>` or line break) followed by exactly one box, as Florence-2 writes them;
- a grounding prompt carries its phrase after the task token; the answer names that phrase and follows it with one
  or more boxes (Florence-2's form: the phrase once, then every box; `phrase<loc>x4phrase<loc>x4` is read too); an
  empty answer says the phrase is not on the frame (a negative example);
- an empty dense answer is a frame without regions.

Captions and phrases are not classes: they are not checked against the class list. Everything else is checked as
for `<OD>` lines (image decodes, boxes inside it and not inverted, bins 0..999), each problem naming file:line and
the value; one image may carry an `<OD>` line, a caption line and any number of grounding lines (one per phrase),
and a second line of the same task (and phrase) for an image is a duplicate.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.detector.loc import LOC_BINS
from agent.detector.tasks import DENSE, GROUNDING
from finetune.data.dataset import Progress, Sample, TaskSample, no_progress
from finetune.data.issues import IssueKind, IssueLog, Location
from finetune.data.validate import RawBox, RawSample, assemble_one

TASK_TOKENS = (DENSE.token, GROUNDING.token)
_RUN = re.compile(r"\s*([^<>]*?)\s*((?:<loc_\d+>)+)\s*")
_BIN = re.compile(r"<loc_(\d+)>")
_BAD_TEXT = re.compile(r"[<>\r\n]")


@dataclass
class RawTaskLine:
    """A parsed region-task line, still unchecked: its task token, phrase and the `RawSample` holding its boxes."""

    task: str
    phrase: str
    raw: RawSample


def task_of(prefix: str) -> tuple[str, str] | None:
    """(task token, phrase) when `prefix` starts with a region task's token; None otherwise (`<OD>`, unknown)."""
    for token in TASK_TOKENS:
        if prefix.startswith(token):
            return token, prefix[len(token):].strip()
    return None


def parse_task_line(image: Path, task: str, phrase: str, suffix: object, location: Location) -> RawTaskLine:
    """A line whose prefix is a region task's token; its problems are recorded on the returned raw sample."""
    raw = RawSample(image, location)
    line = RawTaskLine(task, phrase, raw)
    if task == GROUNDING.token and not phrase:
        raw.problem(location, f"field 'prefix' is {task!r} without a phrase: write what to find after the token, e.g. "
                              f"'{task}scratch'", IssueKind.MALFORMED)
    elif task == DENSE.token and phrase:
        raw.problem(location, f"field 'prefix' is {task + phrase!r}: {task} takes no text after the token",
                    IssueKind.MALFORMED)
    elif _BAD_TEXT.search(phrase):
        raw.problem(location, f"field 'prefix': phrase {phrase!r} holds '<', '>' or a line break", IssueKind.MALFORMED)
    if not isinstance(suffix, str):
        raw.problem(location, f"field 'suffix' is {suffix!r}, expected a string of text<loc_N>x4 groups",
                    IssueKind.MALFORMED)
        return line
    for kind, message in _parse_answer(line, suffix, location):
        (raw.problem if kind is IssueKind.MALFORMED else raw.box_problem)(location, message, kind)
    return line


def _parse_answer(line: RawTaskLine, suffix: str, location: Location) -> list[tuple[IssueKind, str]]:
    """Fill `line.raw.boxes` from the answer text; returns the problems (each naming the value)."""
    runs, unparsed = suffix_runs(suffix, _RUN)
    problems: list[tuple[IssueKind, str]] = []
    for match in runs:
        problems += _check_run(line, match.group(1), [int(b) for b in _BIN.findall(match.group(2))], match.start(),
                               location)
    return problems if unparsed is None else [*problems, (IssueKind.MALFORMED, unparsed)]


def suffix_runs(suffix: str, pattern: re.Pattern[str]) -> tuple[list[re.Match[str]], str | None]:
    """The back-to-back matches of `pattern` over an answer text (`<s>`, `</s>` dropped) and, where some text does not
    match, the message naming it and its position (None when all of it matched)."""
    text = suffix.replace("</s>", "").replace("<s>", "")
    matches: list[re.Match[str]] = []
    position = 0
    while position < len(text):
        match = pattern.match(text, position)
        if match is None:
            return matches, f"field 'suffix': cannot parse {text[position:position + 40]!r} at character {position}"
        matches.append(match)
        position = match.end()
    return matches, None


def _check_run(line: RawTaskLine, label: str, bins: list[int], position: int, location: Location
               ) -> list[tuple[IssueKind, str]]:
    """One `text<loc_N>...` run: the text its task needs, whole boxes, bins in range; good boxes join the line."""
    dense = line.task == DENSE.token
    if dense and not label:
        return [(IssueKind.BAD_BOX, f"field 'suffix': box {bins[:4]} has no caption (character {position})")]
    if not dense:
        if not label and not line.raw.boxes:
            return [(IssueKind.BAD_BOX, f"field 'suffix': box {bins[:4]} comes before the phrase "
                                        f"{line.phrase!r} (character {position})")]
        if label and label != line.phrase:
            return [(IssueKind.BAD_BOX, f"field 'suffix' names {label!r}, but the prompt asks for {line.phrase!r}")]
    named = label or line.phrase
    if len(bins) % 4 or (dense and len(bins) != 4):
        need = "exactly 4 (one box per caption)" if dense else "4 per box"
        return [(IssueKind.BAD_BOX, f"field 'suffix': {named!r} is followed by {len(bins)} <loc_N> tokens, "
                                    f"needs {need}")]
    if max(bins) >= LOC_BINS:
        return [(IssueKind.OUTSIDE, f"field 'suffix': {named!r} has a <loc_N> above {LOC_BINS - 1}: {bins}")]
    for start in range(0, len(bins), 4):
        x1, y1, x2, y2 = ((b + 0.5) / LOC_BINS for b in bins[start:start + 4])
        line.raw.boxes.append(RawBox(named, (x1, y1, x2, y2), location, normalized=True, binned=True))
    return []


def build_task_samples(lines: Sequence[RawTaskLine], log: IssueLog, progress: Progress = no_progress
                       ) -> tuple[list[TaskSample], int]:
    """(the lines that pass every check, how many were dropped); the problems of the others go to `log`."""
    _flag_duplicates(lines)
    kept: list[TaskSample] = []
    dropped = 0
    for line in progress(list(lines), "checking region-task lines"):
        texts = tuple(dict.fromkeys(box.label for box in line.raw.boxes)) or ((line.phrase,) if line.phrase else ())
        checked = assemble_one(line.raw, texts)
        if isinstance(checked, Sample):
            kept.append(TaskSample(checked.image, line.task, checked.detections, line.phrase))
        else:
            log.extend(checked)
            dropped += 1
    return kept, dropped


def _flag_duplicates(lines: Sequence[RawTaskLine]) -> None:
    """Two lines of one task (and phrase) for one image would give it two answers: both are problems."""
    by_key: dict[tuple[Path, str, str], list[RawTaskLine]] = {}
    for line in lines:
        by_key.setdefault((line.raw.image.absolute(), line.task, line.phrase), []).append(line)
    for (image, task, phrase), group in by_key.items():
        for line in group if len(group) > 1 else ():
            others = ", ".join(str(other.raw.location) for other in group if other is not line)
            what = f"{task}{phrase}"
            line.raw.problem(line.raw.location, f"image {image} has more than one {what!r} line (also at {others})",
                             IssueKind.DUPLICATE)


def task_counts(tasks: Sequence[TaskSample]) -> list[str]:
    """One summary line per task: lines, boxes, and (grounding) answers saying "not on the frame"."""
    lines = []
    for token in TASK_TOKENS:
        chosen = [t for t in tasks if t.task == token]
        if not chosen:
            continue
        boxes = sum(len(t.detections) for t in chosen)
        extra = ""
        if token == GROUNDING.token:
            phrases = Counter(t.phrase for t in chosen)
            empty = sum(1 for t in chosen if not len(t.detections))
            extra = f", {len(phrases)} phrase(s), {empty} answer(s) 'not on the frame'"
        lines.append(f"  {token:<32} {len(chosen):>5} line(s), {boxes} box(es){extra}")
    return lines

