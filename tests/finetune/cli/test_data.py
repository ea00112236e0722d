"""`edge-inspect data convert` and `data synth` through the real CLI app."""

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
from tests.finetune.data.helpers import assert_same_dataset, random_dataset, write_image

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
