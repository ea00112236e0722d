"""`edge-inspect model tiny`: an untrained tiny Florence-2 for a class list, through the real app."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agent.cli import app

runner = CliRunner()


def test_model_tiny_writes_a_loadable_model_for_the_classes(tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    result = runner.invoke(app, ["model", "tiny", "--classes", "crack, pit", "--out", str(out), "--image-size", "64"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote tiny Florence-2 for classes ['crack', 'pit'] to {out}\n"
    assert (out / "classes.txt").read_text().split() == ["crack", "pit"]
    assert (out / "model.safetensors").is_file()


def test_model_tiny_refuses_a_size_that_is_not_a_multiple_of_16(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "tiny", "--classes", "a", "--out", str(tmp_path / "m"),
                                 "--image-size", "100"])
    assert result.exit_code == 2
    assert result.stderr == "error: --image-size 100 is not a multiple of 16\n"
    assert not (tmp_path / "m").exists()


def test_model_tiny_reports_an_empty_class_list_with_exit_code_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "tiny", "--classes", " , ", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and result.stderr.startswith("error: class names must be non-empty")


def test_tiny_refuses_an_unknown_family_naming_the_known_ones(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "tiny", "--classes", "a", "--out", str(tmp_path / "m"), "--family", "yolo"])
    assert result.exit_code == 2
    assert result.stderr == "error: unknown model family 'yolo'; available: florence2, maskrcnn\n"
