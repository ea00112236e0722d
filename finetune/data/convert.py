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
from finetune.data.mask_png import read_mask_pngs
from finetune.data.paligemma import read_paligemma, write_paligemma
from finetune.data.voc import read_voc, write_voc
from finetune.data.yolo import read_yolo, write_yolo

Writer = Callable[..., Path]
READ_FORMATS: tuple[str, ...] = ("coco", "voc", "yolo", "deeppcb", "jsonl", "masks", "paligemma")
WRITERS: dict[str, Writer] = {"jsonl": write_jsonl, "coco": write_coco, "yolo": write_yolo, "voc": write_voc,
                              "paligemma": write_paligemma}
WRITE_FORMATS: tuple[str, ...] = tuple(WRITERS)


UNLABELLED_FORMATS = ("voc", "yolo", "masks")  # one annotation file per image, so an image can lack one
CLASS_LIST_FORMATS = ("jsonl", "voc", "paligemma")  # formats that may come without a class list


@dataclass(frozen=True)
class ReadOptions:
    """Options for `read_dataset`; all but `skip_invalid` apply to some formats only.

    `unlabelled_as_good`: an image without an annotation file is a defect-free frame (voc, yolo; else an error).
    `discover_classes`: without a class list, take the labels in first-seen order (jsonl, voc; else an error).
    """

    skip_invalid: bool = False
    split: str | None = None
    include_templates: bool = False
    class_names: tuple[str, ...] | None = None
    unlabelled_as_good: bool = False
    discover_classes: bool = False


def read_dataset(
    fmt: str, src: Path, options: ReadOptions = ReadOptions(), progress: Progress = no_progress
) -> Dataset:
    """Read `src` in format `fmt`; raises `AnnotationError` (all problems) unless `options.skip_invalid`."""
    _check_options(fmt, options)
    skip = options.skip_invalid
    if fmt == "deeppcb":
        return read_deeppcb(src, options.split or "all", options.include_templates, skip, progress)
    if fmt == "jsonl":
        return read_jsonl(src, options.class_names, skip, progress, discover_classes=options.discover_classes)
    if fmt == "paligemma":
        return read_paligemma(src, options.class_names, skip, progress, discover_classes=options.discover_classes)
    if fmt == "voc":
        return read_voc(src, options.class_names, skip, progress, unlabelled_as_good=options.unlabelled_as_good,
                        discover_classes=options.discover_classes)
    if fmt == "coco":
        return read_coco(src, skip, progress)
    if fmt == "masks":
        return read_mask_pngs(src, skip, progress, unlabelled_as_good=options.unlabelled_as_good)
    return read_yolo(src, skip, progress, unlabelled_as_good=options.unlabelled_as_good)


def _check_options(fmt: str, options: ReadOptions) -> None:
    if fmt not in READ_FORMATS:
        raise ValueError(f"unknown source format {fmt!r}; expected one of {list(READ_FORMATS)}")
    if fmt != "deeppcb" and (options.split is not None or options.include_templates):
        raise ValueError(f"split / include_templates apply to deeppcb only, not to {fmt!r}")
    if fmt not in CLASS_LIST_FORMATS and options.class_names is not None:
        raise ValueError(f"a class list can only be given for jsonl, voc or paligemma (which may lack one), not for "
                         f"{fmt!r}")
    if fmt not in CLASS_LIST_FORMATS and options.discover_classes:
        raise ValueError(f"classes can only be discovered for jsonl, voc or paligemma (which may lack a list), not "
                         f"for {fmt!r}")
    if fmt not in UNLABELLED_FORMATS and options.unlabelled_as_good:
        raise ValueError(f"unlabelled-as-good applies to voc and yolo (one annotation file per image), not to {fmt!r}")
    if options.class_names is not None and options.discover_classes:
        raise ValueError("give a class list or discover the classes, not both")


def write_dataset(
    fmt: str, dataset: Dataset, dst: Path, overwrite: bool = False, progress: Progress = no_progress
) -> Path:
    """Write `dataset` to `dst` in format `fmt`; returns the main annotation file or folder. Only Florence JSONL holds
    region-task lines: writing a set that has some to another format is refused (they would be lost)."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown target format {fmt!r}; expected one of {list(WRITE_FORMATS)}")
    if dataset.tasks and fmt != "jsonl":
        kinds = sorted({sample.task for sample in dataset.tasks})
        raise ValueError(f"{fmt} holds class-labelled boxes only: the set's {len(dataset.tasks)} region-task line(s) "
                         f"({', '.join(kinds)}) would be lost; convert to jsonl to keep them, or remove those lines")
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
