"""`edge-inspect recalibrate` as a command: its documented exit codes reach the shell, with the reason on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from agent.cli import app

runner = CliRunner()


def write_config(tmp: Path, model: Path, **recalibration: object) -> Path:
    config = {"state_dir": str(tmp / "state"), "model": {"path": str(model), "device": "cpu"},
              "recalibration": {"publish_events": False, **recalibration}}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_bad_config_exits_2_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("mqtt: {port: 0}\n")
    result = runner.invoke(app, ["recalibrate", "--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and str(path) in result.stderr
    assert not (tmp_path / "state").exists()


def test_without_labelled_frames_it_exits_4_and_points_at_the_report(tiny_model_dir: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    golden.mkdir()
    config = write_config(tmp_path, tiny_model_dir)
    result = runner.invoke(app, ["recalibrate", "--config", str(config), "--golden", str(golden),
                                 "--work-dir", str(tmp_path / "runs")])
    assert result.exit_code == 4, result.output
    lines = result.stderr.splitlines()
    assert lines[0].startswith("nothing_to_learn: 0 labelled queue frame(s)")
    report = Path(lines[1].removeprefix("report: "))
    assert report.name == "report.md" and report.is_file() and report.is_relative_to(tmp_path / "runs")
    assert json.loads((report.parent / "report.json").read_text())["exit_code"] == 4


def test_run_id_names_the_run_folder_in_the_state_dir(tiny_model_dir: Path, tmp_path: Path) -> None:
    from agent.runs import new_run_id, read_progress
    from agent.statedir import StateDir

    run_id = new_run_id()
    config = write_config(tmp_path, tiny_model_dir)
    result = runner.invoke(app, ["recalibrate", "--config", str(config), "--run-id", run_id])
    assert result.exit_code == 4, result.output  # no verified frames: nothing to learn
    run_dir = StateDir(tmp_path / "state").recalibration / run_id
    assert result.stderr.splitlines()[1] == f"report: {run_dir / 'report.md'}"
    progress = read_progress(run_dir)
    assert progress is not None and (progress.run_id, progress.state) == (run_id, "finished")


def test_a_run_id_that_could_name_another_folder_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["recalibrate", "--config", str(tmp_path / "c.yaml"), "--run-id", "../../etc"])
    assert result.exit_code == 2 and "is not a run id" in result.output
