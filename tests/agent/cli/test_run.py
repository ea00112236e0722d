"""`edge-inspect run` and `check-config`: what reaches the shell before the daemon starts, and when it cannot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from agent.cli import app
from agent.config.reference import config_reference_markdown
from agent.ports import free_port

runner = CliRunner()


def write(tmp: Path, config: dict[str, object]) -> Path:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_with_an_invalid_config_exits_2_listing_each_error(tmp_path: Path) -> None:
    path = write(tmp_path, {"mqtt": {"port": 0}, "bogus": 1})
    result = runner.invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"invalid config {path}:"
    assert any(line.startswith("  mqtt.port") for line in lines[1:])
    assert any(line.startswith("  bogus") for line in lines[1:])
    assert not (tmp_path / "state").exists()


def test_run_without_a_loadable_model_exits_1_and_says_why(tmp_path: Path) -> None:
    # a child process, as systemd runs it: the daemon sets up logging and signal handlers for its whole process
    (tmp_path / "no-model").mkdir()  # a directory, but no checkpoint in it
    path = write(tmp_path, {"state_dir": str(tmp_path / "state"), "model": {"path": str(tmp_path / "no-model")},
                            "cameras": [{"name": "cam0", "source": "synthetic:seed=1"}],
                            "metrics": {"port": free_port()}, "mqtt": {"port": free_port()}})
    result = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(path)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: cannot load the model: " in result.stderr and str(tmp_path / "no-model") in result.stderr


def test_a_model_path_that_is_no_directory_and_no_hub_id_is_refused_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, {"state_dir": str(tmp_path / "state"), "model": {"path": "./models/tiny-typo"},
                            "station": {"enabled": False}})
    result = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(path)], capture_output=True,
                            text=True, timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "model.path: model directory './models/tiny-typo' does not exist" in result.stderr
    assert "huggingface" not in result.stdout + result.stderr  # never tried the network


def test_check_config_needs_a_file_or_reference() -> None:
    result = runner.invoke(app, ["check-config"])
    assert result.exit_code == 2 and result.stderr == "error: --config is required (or --reference)\n"


def test_check_config_reference_prints_the_generated_markdown() -> None:
    result = runner.invoke(app, ["check-config", "--reference"])
    assert result.exit_code == 0 and result.stdout == config_reference_markdown()
