"""`convert`: any format to any other keeps boxes; options that do not fit the source format are refused."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from finetune.data.convert import WRITE_FORMATS, ReadOptions, convert, read_dataset, write_dataset
from finetune.data.dataset import Dataset
from tests.finetune.data.helpers import assert_same_dataset, bin_width


def test_a_chain_through_every_format_keeps_boxes_within_a_bin_and_a_pixel(dataset: Dataset, tmp_path: Path) -> None:
    write_dataset("jsonl", dataset, tmp_path / "jsonl")
    chain = ["jsonl", "coco", "yolo", "voc", "jsonl"]
    for src, dst in itertools.pairwise(chain):
        convert(src, dst, tmp_path / src, tmp_path / f"{dst}_from_{src}" if dst == "jsonl" else tmp_path / dst)
    first = read_dataset("jsonl", tmp_path / "jsonl")
    last = read_dataset("jsonl", tmp_path / "jsonl_from_voc")
    assert_same_dataset(dataset, first, tolerance=bin_width((200, 150)))
    # VOC stores integer pixels: 0.5 px, which can move a coordinate into the next bin (0.2 px wide here).
    assert_same_dataset(first, last, tolerance=0.5 + 2 * bin_width((200, 150)))


@pytest.mark.parametrize("fmt", WRITE_FORMATS)
def test_every_writer_output_reads_back_as_the_same_format(dataset: Dataset, tmp_path: Path, fmt: str) -> None:
    write_dataset(fmt, dataset, tmp_path / fmt)
    back = read_dataset(fmt, tmp_path / fmt)
    assert_same_dataset(dataset, back, tolerance=1.0)


def test_options_for_another_format_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="deeppcb only"):
        read_dataset("coco", tmp_path, ReadOptions(split="test"))
    with pytest.raises(ValueError, match="deeppcb only"):
        read_dataset("yolo", tmp_path, ReadOptions(include_templates=True))
    with pytest.raises(ValueError, match="only be given for jsonl, voc or paligemma"):
        read_dataset("coco", tmp_path, ReadOptions(class_names=("a",)))
    with pytest.raises(ValueError, match="discovered for jsonl, voc or paligemma"):
        read_dataset("yolo", tmp_path, ReadOptions(discover_classes=True))
    with pytest.raises(ValueError, match="unlabelled-as-good applies to voc and yolo"):
        read_dataset("jsonl", tmp_path, ReadOptions(unlabelled_as_good=True))
    with pytest.raises(ValueError, match="not both"):
        read_dataset("voc", tmp_path, ReadOptions(class_names=("a",), discover_classes=True))
    with pytest.raises(ValueError, match="unknown source format 'csv'"):
        read_dataset("csv", tmp_path)
    with pytest.raises(ValueError, match="unknown target format 'deeppcb'"):
        convert("jsonl", "deeppcb", tmp_path, tmp_path / "out")

