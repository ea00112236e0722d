"""`edge-inspect model train`: the tiny recipe on a user's data set, through the real app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from tests.finetune.grey_sets import STEEL, grey_set

runner = CliRunner()


def test_model_train_on_a_grey_voc_set_writes_a_model_for_its_classes_and_held_out_metrics(tmp_path: Path) -> None:
    grey_set(tmp_path / "voc", count=6, fmt="voc")
    out = tmp_path / "model"
    result = runner.invoke(app, ["model", "train", "--data", str(tmp_path / "voc"), "--format", "voc", "--out",
                                 str(out), "--steps", "2", "--batch", "2", "--val-fraction", "0.34"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[0])
    assert summary["classes"] == list(STEEL) and summary["held_out_images"] == 2 and summary["train_images"] == 4
    assert "held-out mAP50" in result.stdout
    assert (out / "classes.txt").read_text().split() == list(STEEL)
    assert json.loads((out / "train_metrics.json").read_text())["steps"] == 2


def test_model_train_refuses_a_non_empty_out_folder(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["model", "train", "--data", str(tmp_path), "--out", str(tmp_path / "model")])
    assert result.exit_code == 2 and "is not empty (pass --overwrite" in result.stderr
    assert (tmp_path / "model" / "keep.txt").read_text() == "mine"


def test_model_train_refuses_an_input_size_outside_the_recipe(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "train", "--data", str(tmp_path), "--out", str(tmp_path / "m"),
                                 "--image-size", "200"])
    assert result.exit_code == 2 and "image_size=200: must be one of [128, 256]" in result.stderr


def test_a_separate_val_set_is_held_out_whole_and_a_val_split_needs_one(tmp_path: Path) -> None:
    from finetune.cli.data import SourceFormat, Split
    from finetune.cli.model_train import read_sets

    grey_set(tmp_path / "train", count=4)
    grey_set(tmp_path / "val", count=2)
    train, val, about = read_sets(tmp_path / "train", SourceFormat.jsonl, tmp_path / "val", 0.1, None, None, 0)
    assert (len(train), len(val)) == (4, 2) and about["held_out_from"] == str(tmp_path / "val")
    with pytest.raises(ValueError, match="--val-split needs --val"):
        read_sets(tmp_path / "train", SourceFormat.jsonl, None, 0.1, None, Split.test, 0)
