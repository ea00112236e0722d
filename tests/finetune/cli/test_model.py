"""`edge-inspect model tiny`: an untrained tiny model of a family (Florence-2, PaliGemma 2) for a class list,
through the real app."""

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
    assert result.stderr == "error: unknown model family 'yolo'; available: florence2, maskrcnn, paligemma2\n"


def test_model_tiny_builds_a_paligemma2_the_daemon_can_serve(tmp_path: Path) -> None:
    from agent.detector.factory import create_detector

    out = tmp_path / "pali"
    result = runner.invoke(app, ["model", "tiny", "--family", "paligemma2", "--classes", "crack,pit", "--out",
                                 str(out), "--image-size", "32"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote tiny PaliGemma 2 for classes ['crack', 'pit'] to {out}\n"
    detector = create_detector("torch-eager", out, max_new_tokens=8)
    assert type(detector).__name__ == "PaliGemma2Detector" and detector.class_names == ("crack", "pit")


def test_model_tiny_paligemma2_refuses_a_size_off_the_patch_grid_and_a_separator_in_a_name(tmp_path: Path) -> None:
    base = ["model", "tiny", "--family", "paligemma2", "--out", str(tmp_path / "m")]
    result = runner.invoke(app, [*base, "--classes", "a", "--image-size", "100"])
    assert (result.exit_code, result.stderr) == (2, "error: --image-size 100 is not a multiple of the patch size 16\n")
    result = runner.invoke(app, [*base, "--classes", "a;b"])  # commas split names; a ';' stays in one
    assert result.exit_code == 2 and "class name 'a;b' cannot be written in a PaliGemma prompt" in result.stderr
    assert not (tmp_path / "m").exists()
