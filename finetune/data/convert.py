"""Format registry and `convert`: read any supported layout, validate, write another.

Readers differ in their options (DeepPCB splits and templates, a fixed class list for formats without one);
`read_dataset` takes them all and rejects an option the source format does not understand, so a typo on the
command line is never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from finetune.data.coco import read_coco, write_coco
from finetune.data.dataset import Dataset, Progress, no_progress
from finetune.data.deeppcb import read_deeppcb
from finetune.data.jsonl import read_jsonl, write_jsonl
from finetune.data.voc import read_voc, write_voc
from finetune.data.yolo import read_yolo, write_yolo

Writer = Callable[..., Path]
READ_FORMATS: tuple[str, ...] = ("coco", "voc", "yolo", "deeppcb", "jsonl")
WRITERS: dict[str, Writer] = {"jsonl": write_jsonl, "coco": write_coco, "yolo": write_yolo, "voc": write_voc}
WRITE_FORMATS: tuple[str, ...] = tuple(WRITERS)


@dataclass(frozen=True)
class ReadOptions:
    """Options for `read_dataset`; the DeepPCB ones and `class_names` only apply to some formats."""

    skip_invalid: bool = False
    split: str | None = None
    include_templates: bool = False
    class_names: tuple[str, ...] | None = None


def read_dataset(
    fmt: str, src: Path, options: ReadOptions = ReadOptions(), progress: Progress = no_progress
) -> Dataset:
    """Read `src` in format `fmt`; raises `AnnotationError` (all problems) unless `options.skip_invalid`."""
    _check_options(fmt, options)
    skip = options.skip_invalid
    if fmt == "deeppcb":
        return read_deeppcb(src, options.split or "all", options.include_templates, skip, progress)
    if fmt == "jsonl":
        return read_jsonl(src, options.class_names, skip, progress)
    if fmt == "voc":
        return read_voc(src, options.class_names, skip, progress)
    if fmt == "coco":
        return read_coco(src, skip, progress)
    return read_yolo(src, skip, progress)


def _check_options(fmt: str, options: ReadOptions) -> None:
    if fmt not in READ_FORMATS:
        raise ValueError(f"unknown source format {fmt!r}; expected one of {list(READ_FORMATS)}")
    if fmt != "deeppcb" and (options.split is not None or options.include_templates):
        raise ValueError(f"split / include_templates apply to deeppcb only, not to {fmt!r}")
    if fmt not in ("jsonl", "voc") and options.class_names is not None:
        raise ValueError(f"a class list can only be given for jsonl or voc (which may lack one), not for {fmt!r}")


def write_dataset(
    fmt: str, dataset: Dataset, dst: Path, overwrite: bool = False, progress: Progress = no_progress
) -> Path:
    """Write `dataset` to `dst` in format `fmt`; returns the main annotation file or folder."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown target format {fmt!r}; expected one of {list(WRITE_FORMATS)}")
    return WRITERS[fmt](dataset, dst, overwrite=overwrite, progress=progress)


def convert(
    src_format: str,
    dst_format: str,
    src: Path,
    dst: Path,
    options: ReadOptions = ReadOptions(),
    overwrite: bool = False,
    progress: Progress = no_progress,
) -> Dataset:
    """Read, validate and write; returns the data set that was written (its `skipped` lists dropped problems)."""
    if dst_format not in WRITERS:
        raise ValueError(f"unknown target format {dst_format!r}; expected one of {list(WRITE_FORMATS)}")
    dataset = read_dataset(src_format, src, options, progress)
    write_dataset(dst_format, dataset, dst, overwrite, progress)
    return dataset
