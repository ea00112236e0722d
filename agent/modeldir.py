"""The class list of a model directory: `classes.txt`, one class name per line, in the model's class order.

Every model directory we write (tiny builder, demo recipe, ONNX export) carries one, and everything that loads a model
without explicit class names (detector, LoRA training, the tiny recipe) reads it here. Callers word the error for a
missing file in their own terms (`DetectorError`, `TrainError`, ...); this module only says which file is missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

CLASS_FILE = "classes.txt"


class MissingClassList(FileNotFoundError):
    """`model_dir/classes.txt` does not exist; `path` is the file that was looked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} does not exist")
        self.path = path


def class_file(model_dir: str | Path) -> Path:
    return Path(model_dir) / CLASS_FILE


def read_class_names(model_dir: str | Path) -> tuple[str, ...]:
    """The non-blank lines of `classes.txt`, stripped; `MissingClassList` when the file does not exist."""
    path = class_file(model_dir)
    if not path.is_file():
        raise MissingClassList(path)
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def write_class_names(model_dir: str | Path, class_names: Sequence[str]) -> Path:
    """Write `classes.txt` (one name per line, newline-terminated) into an existing directory; returns its path."""
    path = class_file(model_dir)
    path.write_text("\n".join(class_names) + "\n")
    return path


def looks_local(path: str) -> bool:
    """True when `path` can only mean a local directory, never a hub id (`org/name`): it starts with `.`, `/` or
    `~`, has a backslash or not exactly one `/`, or its first part is a local folder (`models/tiny`)."""
    if path.startswith((".", "/", "~")) or "\\" in path or path.count("/") != 1:
        return True
    return Path(path.split("/", 1)[0]).is_dir()


THRESHOLDS_FILE = "thresholds.json"


def read_thresholds(model_dir: str | Path) -> dict[str, float]:
    """A model directory's own per-class thresholds (`thresholds.json`, e.g. fitted for the demo model); `{}` when
    it has none (a hub id, or a model never calibrated). A file that is not `{class: number in [0, 1]}` raises
    ValueError naming the file and the bad entry."""
    path = Path(model_dir) / THRESHOLDS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map class names to thresholds, got {type(data).__name__}")
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{path}: threshold of {name!r} must be a number in [0, 1], got {value!r}")
    return {str(k): float(v) for k, v in data.items()}
