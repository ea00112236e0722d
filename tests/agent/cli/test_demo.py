"""`edge-inspect demo`: the shipped demo model end to end, and how a missing demo model gets trained (or cannot)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import agent.cli.demo as demo_module
from agent.cli import app

SHIPPED_DEMO_MODEL = Path(__file__).parents[3] / "models" / "demo"
runner = CliRunner()


@pytest.fixture
def demo_model(tmp_path: Path) -> Path:
    """A copy of the shipped demo model (the demo must never write into the repository's)."""
    return Path(shutil.copytree(SHIPPED_DEMO_MODEL, tmp_path / "demo"))


@pytest.mark.slow
def test_the_demo_runs_the_daemon_against_its_broker_and_prints_results(demo_model: Path) -> None:
    # long enough for the daemon to start on two busy cores; the demo then SIGTERMs it and counts what arrived
    result = runner.invoke(app, ["demo", "--model", str(demo_model), "--seconds", "25", "--fps", "4"])
    assert result.exit_code == 0, result.output
    steps = json.loads((demo_model / "demo_metrics.json").read_text())["steps"]
    assert f"using demo model {demo_model} ({steps} training steps)" in result.stdout
    thresholds = json.loads((demo_model / "thresholds.json").read_text())
    assert f"per-class thresholds: { {k: float(v) for k, v in thresholds.items()} }" in result.stdout
    assert re.search(r"^mosquitto listening on 127\.0\.0\.1:\d+$", result.stdout, flags=re.MULTILINE)
    count = int(re.findall(r"^demo finished: (\d+) result messages received$", result.stdout, flags=re.MULTILINE)[0])
    results = re.findall(r"^seq +\d+  cam0  frame +\d+  (pass|fail|uncertain) ", result.stdout, flags=re.MULTILINE)
    assert count >= 1 and len(results) == count
    assert "daemon exited with code 0" in result.stdout
    # the station's address and a login made up for this run; not a terminal, so the demo did not wait for Ctrl-C
    assert re.search(r"^station: http://127\.0\.0\.1:\d+/  \(log in as 'technician' with password '[\w-]+'\)$",
                     result.stdout, flags=re.MULTILINE), result.stdout
    assert "Press Ctrl-C" not in result.stdout


def test_a_missing_demo_model_is_trained_by_model_demo_in_a_child_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_model_demo(command: list[str], check: bool) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "thresholds.json").write_text(json.dumps({"scratch": 0.2, "hole": 0.3, "stain": 0.4}))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(demo_module.subprocess, "run", fake_model_demo)
    monkeypatch.setattr(demo_module, "run_daemon_and_print", lambda config, broker, seconds, station, stay: 5)
    model = tmp_path / "new-demo"
    result = runner.invoke(app, ["demo", "--model", str(model), "--steps", "7", "--seconds", "1"])
    assert result.exit_code == 0, result.output
    assert calls == [[sys.executable, "-m", "agent.cli", "model", "demo", "--out", str(model), "--steps", "7",
                      "--seed", "0", "--threads", "0"]]
    assert f"training the demo model into {model} (7 steps; reused next time)" in result.stdout
    assert "per-class thresholds: {'scratch': 0.2, 'hole': 0.3, 'stain': 0.4}" in result.stdout
    assert "demo finished: 5 result messages received" in result.stdout


def test_a_failed_training_run_stops_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(command: list[str], check: bool) -> Any:
        return subprocess.CompletedProcess(command, 3)

    monkeypatch.setattr(demo_module.subprocess, "run", failing)
    result = runner.invoke(app, ["demo", "--model", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "error: training the demo model failed" in result.stderr and "exited with 3" in result.stderr


def test_without_the_model_demo_command_the_demo_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.agent.cli.test_plugins import app_with_failing_plugin

    broken = app_with_failing_plugin(monkeypatch, "calibration", "No module named 'peft'")
    monkeypatch.setattr(demo_module.subprocess, "run", pytest.fail)
    result = runner.invoke(broken, ["demo", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert f"no demo model in {tmp_path / 'missing'}" in result.stderr
    assert "`edge-inspect model demo`" in result.stderr and "calibration: No module named 'peft'" in result.stderr
    assert "pip install" in result.stderr


def test_a_demo_model_without_thresholds_is_refused_with_the_command_that_fixes_it(demo_model: Path) -> None:
    (demo_model / "thresholds.json").unlink()
    result = runner.invoke(app, ["demo", "--model", str(demo_model)])
    assert result.exit_code == 1
    assert f"{demo_model} has no thresholds.json" in result.stderr
    assert f"edge-inspect model demo --out {demo_model}" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_closed_terminal_or_kill_stops_the_daemon_and_broker_the_demo_started(demo_model: Path,
                                                                                sig: signal.Signals) -> None:
    demo = subprocess.Popen([sys.executable, "-m", "agent.cli", "demo", "--model", str(demo_model), "--stay",
                             "--seconds", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    lines = []
    for line in demo.stdout:  # the daemon is up and the demo waits for Ctrl-C
        lines.append(line)
        if "Press Ctrl-C to stop." in line:
            break
    children = subprocess.run(["pgrep", "-P", str(demo.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2, lines  # mosquitto and the daemon
    demo.send_signal(sig)
    rest = demo.communicate(timeout=90)[0]
    assert "daemon exited with code" in rest  # (-15 when it was still starting: SIGTERM before its handlers)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


class _Running:
    """A stand-in for the daemon's process: still running."""

    def poll(self) -> None:
        return None


def test_the_station_url_is_printed_once_it_answers_and_a_silent_one_is_reported(
        capsys: pytest.CaptureFixture[str]) -> None:
    import http.server
    import threading

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        up = demo_module.DemoStation(server.server_address[1], "technician", "pw")
        assert up.announce_when_up(_Running(), timeout_s=10)  # type: ignore[arg-type]
        server.shutdown()
    assert capsys.readouterr().out == f"station: {up.url}  (log in as 'technician' with password 'pw')\n"

    silent = demo_module.DemoStation(up.port, "technician", "pw")  # nothing listens there any more
    assert not silent.announce_when_up(_Running(), timeout_s=0.5)  # type: ignore[arg-type]
    captured = capsys.readouterr()
    assert captured.out == "" and f"station: {silent.url} did not answer within 0 s" in captured.err
