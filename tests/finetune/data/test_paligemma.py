"""PaliGemma JSONL: `detect ...` prefixes and y1 x1 y2 x2 `<locNNNN>` suffixes, conversion to and from Florence
JSONL, and every kind of bad line reported by line number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from agent.detector.loc import to_bins as florence_bins
from agent.detector.paligemma.dialect import to_answer
from finetune.data.convert import convert, read_dataset
from finetune.data.dataset import Dataset
from finetune.data.issues import AnnotationError
from finetune.data.jsonl import ANNOTATIONS, CLASS_FILE, write_jsonl
from finetune.data.paligemma import read_paligemma, write_paligemma
from tests.finetune.data.helpers import CLASSES, assert_same_dataset, by_name, write_image

PROMPT = "detect " + " ; ".join(CLASSES)


def _write_lines(folder: Path, lines: list[str], classes: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ANNOTATIONS).write_text("\n".join(lines) + "\n")
    if classes is not None:
        (folder / CLASS_FILE).write_text("\n".join(classes) + "\n")
    return folder


def _line(image: str, suffix: str, prefix: str = PROMPT) -> str:
    return json.dumps({"image": image, "prefix": prefix, "suffix": suffix})


def test_written_lines_ask_for_every_class_and_answer_in_paligemmas_dialect(dataset: Dataset, tmp_path: Path) -> None:
    write_paligemma(dataset, tmp_path / "out")
    records = [json.loads(line) for line in (tmp_path / "out" / ANNOTATIONS).read_text().splitlines()]
    for record, sample in zip(records, dataset, strict=True):
        assert record["prefix"] == PROMPT
        assert (tmp_path / "out" / record["image"]).read_bytes() == sample.image.read_bytes()
        assert record["suffix"] == to_answer(sample.detections.sorted_raster())
        theirs = sv.Detections.from_vlm(sv.VLM.PALIGEMMA, record["suffix"], resolution_wh=sample.image_size,
                                        classes=list(CLASSES))  # the suffix is what supervision reads, too
        assert sorted(theirs.data["class_name"]) == sorted(sample.detections.labels)


def test_florence_to_paligemma_and_back_gives_the_same_florence_bins(dataset: Dataset, tmp_path: Path) -> None:
    write_jsonl(dataset, tmp_path / "florence")
    convert("jsonl", "paligemma", tmp_path / "florence", tmp_path / "pali")
    convert("paligemma", "jsonl", tmp_path / "pali", tmp_path / "back")
    before, after = by_name(read_dataset("jsonl", tmp_path / "florence")), by_name(read_dataset("jsonl",
                                                                                              tmp_path / "back"))
    assert sorted(before) == sorted(after)
    for name, sample in before.items():
        first, last = sample.detections.sorted_raster(), after[name].detections.sorted_raster()
        assert first.labels == last.labels
        np.testing.assert_array_equal(florence_bins(first), florence_bins(last))  # 1024 bins are the finer grid


def test_paligemma_round_trip_keeps_boxes_within_half_a_bin(dataset: Dataset, tmp_path: Path) -> None:
    write_paligemma(dataset, tmp_path / "out")
    back = read_paligemma(tmp_path / "out")
    assert_same_dataset(dataset, back, tolerance=max(200, 150) / 1024 / 2 + 1e-3)


def test_without_a_class_file_the_first_prefix_gives_the_class_order(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (100, 100))
    _write_lines(tmp_path, [_line("a.png", "<loc0010><loc0020><loc0300><loc0400> stain", "detect stain ; hole")])
    dataset = read_paligemma(tmp_path)
    assert dataset.class_names == ("stain", "hole") and dataset.notes.classes_from == "format"
    assert dataset.samples[0].detections.xyxy[0].tolist() == pytest.approx(
        [20.5 / 1024 * 100, 10.5 / 1024 * 100, 400.5 / 1024 * 100, 300.5 / 1024 * 100])


def test_an_empty_suffix_is_a_defect_free_frame(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (100, 100))
    _write_lines(tmp_path, [_line("a.png", "")])
    assert len(read_paligemma(tmp_path).samples[0].detections) == 0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"image": "a.png", "suffix": ', "malformed JSON"),
        (_line("a.png", "<loc0001><loc0002><loc0003><loc0004> scratch", prefix="caption en"), "field 'prefix'"),
        (_line("a.png", "<loc0001><loc0002><loc0003><loc0004> scratch", prefix="detect scratch ; hole"),
         "asks for ['scratch', 'hole'], but the set's classes are"),
        (_line("a.png", "<loc0001><loc0002><loc0003> scratch"), "cannot parse"),
        (_line("a.png", "<loc0001><loc0002><loc0003><loc1024> scratch"), "above 1023"),
        (_line("a.png", "<loc0001><loc0002><loc0003><loc0004>"), "has no class"),
        (_line("a.png", "<loc0001><loc0002><loc0003><loc0004> dent"), "unknown class 'dent'"),
        (_line("a.png", "<loc0050><loc0002><loc0040><loc0004> scratch"), "y2 < y1"),
        (_line("a.png", "<loc0001><loc0050><loc0003><loc0040> scratch"), "x2 < x1"),
        (_line("a.png", {"boxes": []}), "field 'suffix'"),  # type: ignore[arg-type]
        (_line("missing.png", "<loc0001><loc0002><loc0003><loc0004> scratch"), "missing image"),
    ],
)
def test_each_bad_line_is_reported_with_file_and_line_number(tmp_path: Path, line: str, expected: str) -> None:
    write_image(tmp_path / "a.png", (100, 100))
    write_image(tmp_path / "b.png", (100, 100))
    _write_lines(tmp_path, [_line("b.png", "<loc0001><loc0002><loc0003><loc0004> scratch"), line], list(CLASSES))
    with pytest.raises(AnnotationError) as caught:
        read_paligemma(tmp_path)
    assert len(caught.value.issues) == 1
    issue = caught.value.issues[0]
    assert (issue.location.file, issue.location.line) == (tmp_path / ANNOTATIONS, 2)
    assert expected in issue.message
    dataset = read_paligemma(tmp_path, skip_invalid=True)  # the bad line's image is dropped, nothing else
    assert [sample.image.name for sample in dataset] == ["b.png"]


def test_class_names_the_dialect_cannot_carry_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'a ; b'"):
        write_paligemma(Dataset(("ok", "a ; b"), [], root=tmp_path), tmp_path / "out")
