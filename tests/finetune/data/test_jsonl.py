"""Florence JSONL: `<loc_N>` text round trips, class order, and every kind of bad line reported by line number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.detector.loc import to_loc_text
from finetune.data.dataset import Dataset
from finetune.data.issues import AnnotationError
from finetune.data.jsonl import ANNOTATIONS, CLASS_FILE, read_jsonl, write_jsonl
from tests.finetune.data.helpers import assert_same_dataset, bin_width, write_image


def _write_lines(folder: Path, lines: list[str], classes: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ANNOTATIONS).write_text("\n".join(lines) + "\n")
    if classes is not None:
        (folder / CLASS_FILE).write_text("\n".join(classes) + "\n")
    return folder


def _line(image: str, suffix: str, prefix: str = "<OD>") -> str:
    return json.dumps({"image": image, "prefix": prefix, "suffix": suffix})


def test_round_trip_keeps_boxes_within_one_bin_and_the_class_order(dataset: Dataset, tmp_path: Path) -> None:
    write_jsonl(dataset, tmp_path / "out")
    back = read_jsonl(tmp_path / "out")
    assert_same_dataset(dataset, back, tolerance=bin_width((200, 150)))
    assert (tmp_path / "out" / CLASS_FILE).read_text().split() == list(dataset.class_names)


def test_written_lines_are_florence_od_records_with_relative_image_paths(dataset: Dataset, tmp_path: Path) -> None:
    write_jsonl(dataset, tmp_path / "out")
    records = [json.loads(line) for line in (tmp_path / "out" / ANNOTATIONS).read_text().splitlines()]
    assert len(records) == len(dataset)
    for record, sample in zip(records, dataset, strict=True):
        assert record["prefix"] == "<OD>"
        assert (tmp_path / "out" / record["image"]).read_bytes() == sample.image.read_bytes()
        assert record["suffix"] == to_loc_text(sample.detections.sorted_raster())


def test_without_a_class_file_labels_are_taken_in_first_seen_order_only_when_asked(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (100, 100))
    write_image(tmp_path / "b.png", (100, 100))
    _write_lines(tmp_path, [_line("a.png", "stain<loc_1><loc_2><loc_30><loc_40>"),
                            _line("b.png", "hole<loc_5><loc_5><loc_9><loc_9>stain<loc_0><loc_0><loc_999><loc_999>")])
    with pytest.raises(AnnotationError, match=r"no class list .* 'stain' \(2 boxes\), 'hole' \(1 box\)"):
        read_jsonl(tmp_path, skip_invalid=True)  # dropping images cannot fix a missing class list
    dataset = read_jsonl(tmp_path, discover_classes=True)
    assert dataset.notes.classes_from == "labels"
    assert dataset.class_names == ("stain", "hole")
    assert dataset.samples[1].detections.labels == ["hole", "stain"]
    assert dataset.samples[0].detections.xyxy[0].tolist() == pytest.approx([0.15, 0.25, 3.05, 4.05])


def test_multi_word_class_names_survive(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (100, 100))
    _write_lines(tmp_path, [_line("a.png", "pin hole<loc_1><loc_2><loc_30><loc_40>")], ["pin hole"])
    assert read_jsonl(tmp_path).samples[0].detections.labels == ["pin hole"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"image": "a.png", "suffix": ', "malformed JSON"),
        ('["a.png"]', "field 'image' is missing"),
        (_line("a.png", "scratch<loc_1><loc_2><loc_3><loc_4>", prefix="<CAPTION>"), "field 'prefix'"),
        (_line("a.png", "scratch<loc_1><loc_2><loc_3>"), "cannot parse"),
        (_line("a.png", "scratch<loc_1><loc_2><loc_3><loc_1000>"), "above 999"),
        (_line("a.png", "<loc_1><loc_2><loc_3><loc_4>"), "has no label"),
        (_line("a.png", "dent<loc_1><loc_2><loc_3><loc_4>"), "unknown class 'dent'"),
        (_line("a.png", "scratch<loc_50><loc_2><loc_40><loc_4>"), "x2 < x1"),
        (_line("a.png", "scratch<loc_1><loc_50><loc_3><loc_40>"), "y2 < y1"),
        (_line("missing.png", "scratch<loc_1><loc_2><loc_3><loc_4>"), "missing image"),
    ],
)
def test_each_bad_line_is_reported_with_file_and_line_number(tmp_path: Path, line: str, expected: str) -> None:
    write_image(tmp_path / "a.png", (100, 100))
    write_image(tmp_path / "b.png", (100, 100))
    _write_lines(tmp_path, [_line("b.png", "scratch<loc_1><loc_2><loc_3><loc_4>"), line], ["scratch"])
    with pytest.raises(AnnotationError) as caught:
        read_jsonl(tmp_path)
    assert len(caught.value.issues) == 1
    issue = caught.value.issues[0]
    assert (issue.location.file, issue.location.line) == (tmp_path / ANNOTATIONS, 2)
    assert expected in issue.message
    assert f"{tmp_path / ANNOTATIONS}:2: " in str(caught.value)


def test_duplicate_image_lines_are_reported(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", (100, 100))
    _write_lines(tmp_path, [_line("a.png", ""), _line("a.png", "")])
    with pytest.raises(AnnotationError, match=r":2: duplicate entry .*first on line 1"):
        read_jsonl(tmp_path)


def test_all_problems_are_listed_and_skip_invalid_drops_only_the_bad_images(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / name, (100, 100))
    lines = [_line("a.png", "scratch<loc_1><loc_2><loc_3><loc_4>"), "not json",
             _line("b.png", "scratch<loc_9><loc_2><loc_3><loc_4>"), _line("c.png", "")]
    _write_lines(tmp_path, lines, ["scratch"])
    with pytest.raises(AnnotationError) as caught:
        read_jsonl(tmp_path)
    assert [issue.location.line for issue in caught.value.issues] == [2, 3]
    dataset = read_jsonl(tmp_path, skip_invalid=True)
    assert [sample.image.name for sample in dataset] == ["a.png", "c.png"]
    assert len(dataset.skipped) == 2


def test_class_names_that_cannot_be_written_as_text_are_refused(dataset: Dataset, tmp_path: Path) -> None:
    bad = Dataset(("ok", "a<b"), [], root=tmp_path)
    with pytest.raises(ValueError, match="'a<b'"):
        write_jsonl(bad, tmp_path / "out")


def test_refuses_a_non_empty_output_folder_unless_overwrite(dataset: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_jsonl(dataset, out)
    with pytest.raises(FileExistsError, match="not empty"):
        write_jsonl(dataset, out)
    write_jsonl(dataset, out, overwrite=True)
    assert len(read_jsonl(out)) == len(dataset)
