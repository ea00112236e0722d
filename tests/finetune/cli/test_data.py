"""`edge-inspect data convert / validate / split / synth` through the real CLI app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from finetune.cli.data import SourceFormat, Split, TargetFormat
from finetune.data.convert import READ_FORMATS, WRITE_FORMATS
from finetune.data.dataset import Dataset, Sample
from finetune.data.deeppcb import SPLITS
from finetune.data.jsonl import ANNOTATIONS, read_jsonl, write_jsonl
from tests.finetune.data.helpers import assert_same_dataset, random_dataset, truncate, write_image, write_voc_xml

runner = CliRunner()


@pytest.fixture
def dataset(tmp_path: Path) -> Dataset:
    return random_dataset(tmp_path / "source")


def test_cli_choices_match_what_the_readers_and_writers_support() -> None:
    assert [f.value for f in SourceFormat] == list(READ_FORMATS)
    assert [f.value for f in TargetFormat] == list(WRITE_FORMATS)
    assert [s.value for s in Split] == list(SPLITS)


def test_convert_writes_the_target_and_prints_a_summary(dataset: Dataset, tmp_path: Path) -> None:
    write_jsonl(dataset, tmp_path / "jsonl")
    result = runner.invoke(app, ["data", "convert", "--from", "jsonl", "--to", "yolo",
                                 str(tmp_path / "jsonl"), str(tmp_path / "yolo")])
    assert result.exit_code == 0, result.output
    assert f"wrote {len(dataset)} images, {dataset.box_count} boxes, 3 classes" in result.stdout
    assert (tmp_path / "yolo" / "data.yaml").is_file()


def _bad_jsonl(folder: Path) -> Path:
    for name in ("a.png", "b.png"):
        write_image(folder / name, (100, 100))
    lines = [json.dumps({"image": "a.png", "prefix": "<OD>", "suffix": "hole<loc_1><loc_2><loc_3><loc_4>"}),
             json.dumps({"image": "b.png", "prefix": "<OD>", "suffix": "dent<loc_1><loc_2><loc_3><loc_4>"}),
             json.dumps({"image": "c.png", "prefix": "<OD>", "suffix": ""})]
    (folder / ANNOTATIONS).write_text("\n".join(lines))
    (folder / "classes.txt").write_text("hole\n")
    return folder


def test_convert_fails_listing_every_problem_with_file_and_line(tmp_path: Path) -> None:
    src = _bad_jsonl(tmp_path / "src")
    result = runner.invoke(app, ["data", "convert", "--from", "jsonl", "--to", "coco", str(src), str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "2 annotation problem(s)" in result.stderr
    assert f"{src / ANNOTATIONS}:2: unknown class 'dent'" in result.stderr
    assert f"{src / ANNOTATIONS}:3: missing image" in result.stderr
    assert not (tmp_path / "out").exists()


def test_convert_with_skip_invalid_keeps_the_good_images_and_warns_with_a_count(tmp_path: Path) -> None:
    src = _bad_jsonl(tmp_path / "src")
    result = runner.invoke(app, ["data", "convert", "--from", "jsonl", "--to", "voc", "--skip-invalid",
                                 str(src), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "warning: skipped invalid annotations in 1 file(s): 2 annotation problem(s)" in result.stderr
    assert "wrote 1 images, 1 boxes" in result.stdout and "2 problem(s) skipped" in result.stdout
    assert [p.name for p in (tmp_path / "out" / "Annotations").iterdir()] == ["a.xml"]


def test_convert_refuses_deeppcb_options_for_other_formats_and_unknown_formats(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "convert", "--from", "coco", "--split", "test", str(tmp_path), str(tmp_path)])
    assert result.exit_code == 2 and "deeppcb only" in result.stderr
    result = runner.invoke(app, ["data", "convert", "--from", "csv", str(tmp_path), str(tmp_path / "o")])
    assert result.exit_code == 2 and "csv" in result.output


def _fake_deeppcb_one_image(root: Path) -> Path:
    data = root / "PCBData"
    write_image(data / "group1" / "1" / "1000_test.jpg", (64, 64), channels=1)
    write_image(data / "group1" / "1" / "1000_temp.jpg", (64, 64), channels=1)
    (data / "group1" / "1_not").mkdir(parents=True)
    (data / "group1" / "1_not" / "1000.txt").write_text("1 2 10 12 4")
    (data / "test.txt").write_text("group1/1/1000.jpg group1/1_not/1000.txt")
    return root


def test_convert_deeppcb_with_templates_to_jsonl(tmp_path: Path) -> None:
    src = _fake_deeppcb_one_image(tmp_path / "deeppcb")
    result = runner.invoke(app, ["data", "convert", "--from", "deeppcb", "--split", "test", "--include-templates",
                                 str(src), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "out" / ANNOTATIONS).read_text().splitlines()]
    assert [r["image"] for r in records] == ["images/group1/1/1000_test.jpg", "images/group1/1/1000_temp.jpg"]
    assert records[0]["suffix"] == "spur<loc_15><loc_31><loc_156><loc_187>" and records[1]["suffix"] == ""


def _synth(out: Path, seed: int, *extra: str) -> None:
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--count", "6", "--seed", str(seed),
                                 "--size", "64", *extra])
    assert result.exit_code == 0, result.output
    assert "wrote 6 images" in result.stdout


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synth_is_byte_identical_for_a_seed_and_differs_for_another(tmp_path: Path) -> None:
    _synth(tmp_path / "a", 3)
    _synth(tmp_path / "b", 3)
    _synth(tmp_path / "c", 4)
    assert _folder_bytes(tmp_path / "a") == _folder_bytes(tmp_path / "b")
    assert _folder_bytes(tmp_path / "a") != _folder_bytes(tmp_path / "c")


def test_synth_output_is_a_jsonl_set_matching_the_generator(tmp_path: Path) -> None:
    from agent.capture.synthetic import SyntheticGenerator

    _synth(tmp_path / "s", 5, "--classes", "crack,pit")
    dataset = read_jsonl(tmp_path / "s")
    assert dataset.class_names == ("crack", "pit")
    assert [s.image.name for s in dataset] == [f"{i:06d}.png" for i in range(6)]
    generator = SyntheticGenerator(seed=5, size=64, classes=("crack", "pit"))
    frames = [Sample(s.image, generator.frame(i).detections) for i, s in enumerate(dataset)]
    expected = Dataset(dataset.class_names, frames)
    assert_same_dataset(expected, dataset, tolerance=64 / 1000)


@pytest.mark.parametrize(("args", "message"), [(["--count", "0"], "--count"), (["--classes", "a,a"], "duplicate")])
def test_synth_rejects_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "o"), "--count", "2", *args])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("command", ["convert", "validate", "split"])
def test_help_shows_the_folder_layout_of_every_format(command: str) -> None:
    result = runner.invoke(app, ["data", command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for text in ("DIR/Annotations/**/NAME.xml", "DIR/JPEGImages/**/NAME.jpg", "DIR/ImageSets/Main/*.txt",
                 "DIR/annotations.json", "DIR/labels/**/NAME.txt", "DIR/PCBData/trainval.txt",
                 "DIR/annotations.jsonl", "folder names match in any case", "--unlabelled-as-good"):
        assert text in result.stdout, text


def _broken_voc(root: Path) -> Path:
    """Upper-case folders; a.jpg fine (2 boxes), b.jpg truncated (1 box), c.jpg without XML."""
    for stem in ("a", "b", "c"):
        write_image(root / "JPEGIMAGES" / f"{stem}.jpg", (60, 40), seed=ord(stem))
    truncate(root / "JPEGIMAGES" / "b.jpg")
    write_voc_xml(root / "ANNOTATIONS" / "a.xml", "a.jpg", [("hole", 1, 1, 9, 9), ("stain", 2, 2, 8, 8)])
    write_voc_xml(root / "ANNOTATIONS" / "b.xml", "b.jpg", [("hole", 1, 1, 9, 9)])
    (root / "classes.txt").write_text("hole\nstain\n")
    return root


def test_validate_lists_every_problem_by_kind_and_exits_1(tmp_path: Path) -> None:
    src = _broken_voc(tmp_path / "set")
    result = runner.invoke(app, ["data", "validate", str(src), "--from", "voc"])
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "3 images, 3 boxes; classes from classes.txt" in out
    assert "2 problem(s), by kind:" in out and "1  undecodable image" in out and "1  image without annotation" in out
    assert f"{src / 'ANNOTATIONS' / 'b.xml'}:1: cannot decode image {src / 'JPEGIMAGES' / 'b.jpg'}" in out
    assert f"{src / 'JPEGIMAGES' / 'c.jpg'}: no annotation file" in out


def test_validate_of_a_clean_set_exits_0_and_a_missing_folder_exits_2(tmp_path: Path) -> None:
    src = _broken_voc(tmp_path / "set")
    (src / "JPEGIMAGES" / "b.jpg").unlink()
    (src / "ANNOTATIONS" / "b.xml").unlink()
    result = runner.invoke(app, ["data", "validate", str(src), "--from", "voc", "--unlabelled-as-good"])
    assert result.exit_code == 0, result.output
    assert "1 image(s) without annotation file taken as defect-free (--unlabelled-as-good)" in result.stdout
    assert "no problems" in result.stdout
    result = runner.invoke(app, ["data", "validate", str(tmp_path), "--from", "voc"])
    assert result.exit_code == 2 and "no Annotations/ folder (any case)" in result.stderr


def test_more_than_50_problems_go_in_full_to_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _broken_voc(tmp_path / "steel")
    for i in range(60):
        write_image(src / "JPEGIMAGES" / f"extra{i:02d}.png", (8, 8))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["data", "validate", str(src), "--from", "voc"])
    assert result.exit_code == 1
    shown = [line for line in result.stdout.splitlines() if "no annotation file" in line or "cannot decode" in line]
    assert len(shown) == 50
    assert f"... and 12 more (full list in {tmp_path / 'steel-problems.txt'})" in result.stdout
    listed = (tmp_path / "steel-problems.txt").read_text().splitlines()
    assert sum("no annotation file" in line for line in listed) == 61 and "62 problem(s):" in listed
    result = runner.invoke(app, ["data", "convert", str(src), str(tmp_path / "out"), "--from", "voc",
                                 "--report", str(tmp_path / "convert.txt")])
    assert result.exit_code == 1 and "62 problem(s):" in (tmp_path / "convert.txt").read_text()


def test_convert_skip_invalid_drops_bad_images_entirely_and_counts_them(tmp_path: Path) -> None:
    src = _broken_voc(tmp_path / "set")
    result = runner.invoke(app, ["data", "convert", str(src), str(tmp_path / "out"), "--from", "voc"])
    assert result.exit_code == 1 and "nothing written" in result.stderr
    result = runner.invoke(app, ["data", "convert", str(src), str(tmp_path / "out"), "--from", "voc",
                                 "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 images, 2 boxes" in result.stdout
    assert "2 problem(s) skipped: dropped 2 image(s) with their 1 box(es)" in result.stdout
    records = [json.loads(line) for line in (tmp_path / "out" / ANNOTATIONS).read_text().splitlines()]
    assert [r["image"] for r in records] == ["images/a.jpg"]  # neither b nor c became a defect-free frame


def test_convert_without_a_class_list_names_the_labels_and_discovering_them_is_counted(tmp_path: Path) -> None:
    src = _broken_voc(tmp_path / "set")
    (src / "classes.txt").unlink()
    args = ["data", "convert", str(src), str(tmp_path / "out"), "--from", "voc", "--skip-invalid"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and not (tmp_path / "out").exists()
    assert "no class list (no --classes, no classes.txt); the labels name 2 class(es): 'hole' (2 boxes), " \
           "'stain' (1 box)" in result.stderr
    assert "a missing class list cannot be skipped" in result.stderr
    result = runner.invoke(app, [*args, "--discover-classes"])
    assert result.exit_code == 0, result.output
    assert "classes from the labels, in first-seen order (--discover-classes)" in result.stdout


def test_split_prints_images_and_boxes_per_class_per_split_and_repeats_itself(tmp_path: Path) -> None:
    write_jsonl(random_dataset(tmp_path / "source", count=20), tmp_path / "set")
    args = ["data", "split", str(tmp_path / "set"), "--val", "0.2", "--test", "0.1", "--seed", "4"]
    first = runner.invoke(app, [*args, str(tmp_path / "a")])
    again = runner.invoke(app, [*args, str(tmp_path / "b")])
    assert first.exit_code == 0, first.output
    header, *rows = first.stdout.splitlines()[1:7]
    assert header.split() == ["class", "train", "images", "boxes", "val", "images", "boxes", "test", "images", "boxes"]
    assert [row.split()[0] for row in rows] == ["scratch", "hole", "stain", "(no", "all"]
    assert rows[-1].split()[1::2] == ["14", "4", "2"]
    for name in ("train", "val", "test"):
        assert (tmp_path / "a" / name / ANNOTATIONS).read_text() == (tmp_path / "b" / name / ANNOTATIONS).read_text()
    assert first.stdout.replace(str(tmp_path / "a"), "") == again.stdout.replace(str(tmp_path / "b"), "")
