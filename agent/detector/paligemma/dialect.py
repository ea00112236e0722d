"""PaliGemma's detection dialect: the prompt and the answer as text a PaliGemma (2) model reads and writes.

- prompt: `detect scratch ; hole ; stain` (the class names, separated by ` ; `);
- answer: per box four location tokens `<loc0000>`..`<loc1023>` in y1 x1 y2 x2 order, then a space and the class
  name; boxes separated by ` ; `: `<loc0102><loc0051><loc0307><loc0204> scratch ; <loc...>x4 hole`. An empty answer
  is a frame without defects.

Each coordinate is quantised to one of 1024 bins across the image (bin = floor(y / height * 1024)) and read back at
the bin's centre ((bin + 0.5) * height / 1024), the convention `agent.detector.loc` uses for Florence-2's 1000 bins.
supervision's PaliGemma parser reads a bin at its lower edge (bin * height / 1024): the two differ by exactly half a
bin (tests/agent/detector/paligemma/test_dialect.py checks both on the same strings).

`Detections` knows nothing of this dialect; the detector, the training targets and the PaliGemma JSONL data format
convert through the functions here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from agent.detector.base import DetectorError
from agent.detector.loc import dequantize, quantize

LOC_BINS = 1024
LOC_TOKENS = tuple(f"<loc{i:04d}>" for i in range(LOC_BINS))
SEPARATOR = " ; "
PROMPT_VERB = "detect"
END_TOKENS = ("<eos>", "<pad>")  # what a decoded answer may end with
# one box of an answer, the separator stripped: four bins (y1 x1 y2 x2) and the label (use with fullmatch)
BOX_PATTERN = re.compile(r"<loc(\d{4})><loc(\d{4})><loc(\d{4})><loc(\d{4})> ?([^<>;]*?)")


class AnswerError(DetectorError):
    """Model output that is not a PaliGemma detection answer for the class list; the message quotes the text."""


def check_class_names(class_names: Sequence[str]) -> None:
    """Names that can travel in a PaliGemma prompt and answer: non-empty, no surrounding blanks, none of `;` (the
    separator), `<`, `>` (location tokens) or line breaks (the prompt ends with one); ValueError naming the name."""
    for name in class_names:
        if not name or name != name.strip() or any(c in name for c in ";<>\n\r"):
            raise ValueError(f"class name {name!r} cannot be written in a PaliGemma prompt or answer (empty, "
                             "surrounding blanks, ';', '<', '>' or a line break)")


def detect_prompt(class_names: Sequence[str]) -> str:
    """The detection prompt for a class list: `detect a ; b ; c`."""
    check_class_names(class_names)
    return f"{PROMPT_VERB} {SEPARATOR.join(class_names)}"


def prompt_classes(prompt: str) -> list[str] | None:
    """The class names a `detect a ; b` prompt asks for; None when the text is not a detection prompt."""
    verb, _, rest = prompt.strip().partition(" ")
    if verb != PROMPT_VERB or not rest.strip():
        return None
    return [name.strip() for name in rest.split(";")]


def to_bins(dets: Detections) -> npt.NDArray[np.int64]:
    """The boxes of `dets` as location bins in PaliGemma's y1 x1 y2 x2 order (N x 4)."""
    w, h = dets.image_size
    xyxy = dets.xyxy
    columns = [quantize(xyxy[:, 1], h, LOC_BINS), quantize(xyxy[:, 0], w, LOC_BINS),
               quantize(xyxy[:, 3], h, LOC_BINS), quantize(xyxy[:, 2], w, LOC_BINS)]
    return np.stack(columns, axis=1).reshape(-1, 4)


def bins_to_xyxy(bins: npt.ArrayLike, image_size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """N x 4 location bins (y1 x1 y2 x2) -> N x 4 pixel boxes (x1 y1 x2 y2) on a frame of (width, height)."""
    b = np.asarray(bins).reshape(-1, 4)
    w, h = image_size
    out = np.stack([dequantize(b[:, 1], w, LOC_BINS), dequantize(b[:, 0], h, LOC_BINS),
                    dequantize(b[:, 3], w, LOC_BINS), dequantize(b[:, 2], h, LOC_BINS)], axis=1)
    return out.reshape(-1, 4).astype(np.float32)


def to_answer(dets: Detections) -> str:
    """The answer text for `dets`, boxes in their stored order: `<loc>x4 label ; <loc>x4 label`."""
    return SEPARATOR.join("".join(LOC_TOKENS[int(b)] for b in row) + f" {label}"
                          for label, row in zip(dets.labels, to_bins(dets)))


def parse_answer(text: str, class_names: Sequence[str], image_size: tuple[int, int]) -> Detections:
    """Parse an answer (scores 1.0); anything else (a box with fewer than four location tokens, an unknown class,
    stray text) is an `AnswerError` quoting the text."""
    body = _strip_end(text)
    labels: list[str] = []
    bins: list[list[int]] = []
    for part in body.split(";") if body else []:
        match = BOX_PATTERN.fullmatch(part.strip(" "))
        if match is None:
            raise AnswerError(f"not a PaliGemma detection answer: {text!r} (cannot read {part.strip(' ')!r}; "
                              "expected '<locYYYY><locXXXX><locYYYY><locXXXX> class' per box, separated by ' ; ')")
        label = match.group(5).strip()
        if label not in class_names:
            raise AnswerError(f"unknown class {label!r} in PaliGemma answer {text!r}; known: {list(class_names)}")
        box = [int(g) for g in match.groups()[:4]]
        if max(box) >= LOC_BINS or box[2] < box[0] or box[3] < box[1]:
            raise AnswerError(f"box {box} (y1 x1 y2 x2) in PaliGemma answer {text!r} is not a box: bins run "
                              f"0..{LOC_BINS - 1} and y2 >= y1, x2 >= x1")
        labels.append(label)
        bins.append(box)
    xyxy = bins_to_xyxy(np.asarray(bins, dtype=np.int64).reshape(-1, 4), image_size)
    return Detections.from_labels(labels, xyxy, class_names, image_size)


def _strip_end(text: str) -> str:
    """The answer without `<eos>`/`<pad>` and surrounding spaces (other white space, e.g. a newline, is no answer)."""
    body = text
    for token in END_TOKENS:
        body = body.replace(token, "")
    return body.strip(" ")
