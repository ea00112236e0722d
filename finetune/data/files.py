"""File helpers shared by the format modules: images, class-list files, sub-folders, output folders, image copies."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from finetune.data.dataset import Dataset, Progress, Sample, TaskSample, no_progress
from finetune.data.issues import IssueKind

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def probe_image(path: Path) -> tuple[int, int] | str:
    """(width, height) from the image header without decoding pixels, or a message saying why it failed."""
    if not path.is_file():
        return f"missing image {path}"
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as error:
        return f"cannot read image {path}: {error}"


class ImageProblem(Exception):
    """An image that is missing or cannot be decoded; `kind` says which."""

    def __init__(self, kind: IssueKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def decode_image(path: Path) -> tuple[int, int]:
    """(width, height) after decoding every pixel, so a truncated file fails here and not in training.

    Raises `ImageProblem`. PIL refuses truncated data by default; OpenCV would not say so.
    """
    if not path.is_file():
        raise ImageProblem(IssueKind.MISSING_IMAGE, f"missing image {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageProblem(IssueKind.BAD_IMAGE, f"cannot decode image {path}: {error}") from error


def image_files(folder: Path) -> list[Path]:
    """Every image under `folder` (any depth, suffix in any case), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def find_subdir(parent: Path, names: tuple[str, ...], what: str) -> Path:
    """The sub-folder of `parent` named like one of `names` in any case (`ANNOTATIONS/`), earlier names first.

    Two spellings of one name (`Annotations/` and `annotations/`) are refused rather than one silently chosen.
    """
    if not parent.is_dir():
        raise FileNotFoundError(f"{what}: no such folder {parent}")
    folders = [p for p in sorted(parent.iterdir()) if p.is_dir()]
    for name in names:
        found = [p for p in folders if p.name.casefold() == name.casefold()]
        if len(found) > 1:
            raise ValueError(f"{what}: both {found[0].name}/ and {found[1].name}/ in {parent}; keep one")
        if found:
            return found[0]
    present = ", ".join(f"{p.name}/" for p in folders) or "nothing"
    wanted = " or ".join(f"{name}/" for name in names)
    raise FileNotFoundError(f"{what}: no {wanted} folder (any case) in {parent}; found {present}")


def image_channels(path: Path) -> int:
    """Number of colour channels (1 for the binarised DeepPCB frames), for VOC's <depth>."""
    with Image.open(path) as image:
        return len(image.getbands())


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file, numbered as `grep -n` and editors number them: only `\n` ends a
    line (a CRLF file's `\r` is dropped; a lone `\r` stays inside its line instead of shifting every number after
    it, which Python's universal newlines would do)."""
    with path.open(encoding="utf-8", newline="") as file:
        for number, line in enumerate(file.read().split("\n"), start=1):
            yield number, line.removesuffix("\r")


def read_class_file(path: Path) -> tuple[str, ...]:
    """One class name per line; blank lines are ignored, duplicates are an error naming the line."""
    names: list[str] = []
    for number, line in numbered_lines(path):
        name = line.strip()
        if not name:
            continue
        if name in names:
            raise ValueError(f"{path}:{number}: duplicate class name {name!r}")
        names.append(name)
    if not names:
        raise ValueError(f"{path}: no class names in the file")
    return tuple(names)


def write_class_file(path: Path, class_names: tuple[str, ...]) -> None:
    path.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")


def prepare_output_dir(dst: Path, overwrite: bool) -> None:
    """Create `dst`; refuse a non-empty one unless `overwrite` (files there may then be replaced)."""
    if dst.exists() and not dst.is_dir():
        raise FileExistsError(f"output {dst} exists and is not a directory")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"output directory {dst} is not empty (pass overwrite to write into it)")
    dst.mkdir(parents=True, exist_ok=True)


def copy_images(dataset: Dataset, images_dir: Path, progress: Progress = no_progress) -> list[Path]:
    """Copy every sample's image (and every region-task line's) under `images_dir` at its relative name; return the
    new paths, samples first, then task lines, in order.

    Two images mapping to the same name would overwrite each other, so that is an error (one image named by several
    lines is copied once). An image already at its destination (a set written in place, e.g. by `data synth`) is
    left alone.
    """
    items: list[Sample | TaskSample] = [*dataset.samples, *dataset.tasks]
    targets = [images_dir / dataset.relative_name(item) for item in items]
    seen: dict[Path, Path] = {}
    for item, target in zip(items, targets, strict=True):
        if target in seen and seen[target] != item.image:
            raise ValueError(f"images {seen[target]} and {item.image} would both be written to {target}")
        seen[target] = item.image
    for target, image in progress(list(seen.items()), "copying images"):
        if target.resolve() == image.resolve():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, target)
    return targets
