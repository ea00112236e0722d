"""Run processes as the station controls them: one at a time, watched through their files, cancelled by SIGTERM, a
crash reported with what the process printed. The process is tests/agent/station/fake_run.py (no model)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.runs import RUN_ID, RunProgress, write_progress
from agent.station.runs import NICENESS, RunControl, RunRefused, is_recalibration, pid_alive, recalibrate_command
from tests.agent.station.fake_run import write_report

FAKE_RUN = Path(__file__).with_name("fake_run.py")


def fake_command(runs_dir: Path, scenario: str = "reject", steps: int = 4, step_s: float = 0.1
                 ) -> Callable[[Path, str], list[str]]:
    return lambda _config, run_id: [sys.executable, str(FAKE_RUN), str(runs_dir), run_id, scenario, str(steps),
                                    str(step_s)]


def control_for(tmp_path: Path, scenario: str = "reject", steps: int = 4, step_s: float = 0.1) -> RunControl:
    runs_dir = tmp_path / "state" / "recalibration"
    return RunControl(runs_dir, fake_command(runs_dir, scenario, steps, step_s))


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_command_is_the_recalibrate_cli_at_low_priority() -> None:
    argv = recalibrate_command(Path("/etc/edge-inspect/config.yaml"), "20250101T000000000000Z")
    assert argv[:3] == ["nice", "-n", str(NICENESS)] and argv[3] == sys.executable
    assert argv[4:] == ["-m", "agent.cli", "recalibrate", "--config", "/etc/edge-inspect/config.yaml", "--run-id",
                        "20250101T000000000000Z", "--no-promote"]  # promoting is the technician's decision


def test_without_a_config_file_no_run_starts(tmp_path: Path) -> None:
    control = control_for(tmp_path)
    with pytest.raises(RunRefused, match="started without a config file"):
        control.start(None)
    assert control.run_ids() == []


def test_a_run_is_watched_to_its_report_and_only_one_goes_at_a_time(tmp_path: Path) -> None:
    control = control_for(tmp_path, steps=6, step_s=0.15)
    run_id = control.start(tmp_path / "config.yaml")
    assert RUN_ID.match(run_id) and control.active() == run_id
    with pytest.raises(RunRefused, match=f"run {run_id} is still going"):
        control.start(tmp_path / "config.yaml")
    wait_for(lambda: (p := control.progress(run_id)) is not None and p.stage == "train" and p.step >= 2)
    training = control.summary(run_id)
    assert training["state"] == "running" and training["total_steps"] == 6 and training["loss"] > 0
    wait_for(lambda: control.active() is None)
    done = control.summary(run_id)
    assert (done["state"], done["outcome"], done["gate_passed"]) == ("finished", "rejected", False)
    wait_for(lambda: control.exit_code(run_id) is not None)  # the process may exit a moment after its last word
    assert control.exit_code(run_id) == 0 and control.run_ids() == [run_id]


def test_cancel_sends_sigterm_and_the_run_ends_cancelled(tmp_path: Path) -> None:
    control = control_for(tmp_path, scenario="hang")
    run_id = control.start(tmp_path / "config.yaml")
    wait_for(lambda: (p := control.progress(run_id)) is not None and p.step >= 1)
    control.cancel(run_id)
    wait_for(lambda: control.active() is None)
    summary = control.summary(run_id)
    assert summary["state"] == "cancelled" and summary["outcome"] is None
    with pytest.raises(RunRefused, match="is not running"):
        control.cancel(run_id)


def test_a_run_that_dies_without_a_report_is_failed_with_its_last_output(tmp_path: Path) -> None:
    control = control_for(tmp_path, scenario="crash", steps=1)
    run_id = control.start(tmp_path / "config.yaml")
    wait_for(lambda: control.active() is None)
    summary = control.summary(run_id)
    assert summary["state"] == "failed" and "exit code 1" in summary["message"]
    assert "something broke in evaluate" in summary["message"]


def test_a_process_that_cannot_start_its_run_is_failed_with_its_output(tmp_path: Path) -> None:
    runs_dir = tmp_path / "recalibration"
    control = RunControl(runs_dir, lambda _c, _r: [sys.executable, "-c", "print('No such option: --run-id')"])
    run_id = control.start(tmp_path / "config.yaml")
    wait_for(lambda: control.active() is None)
    summary = control.summary(run_id)
    assert summary["state"] == "failed" and "No such option: --run-id" in summary["message"]


def test_a_command_that_cannot_be_executed_is_refused_and_recorded(tmp_path: Path) -> None:
    control = RunControl(tmp_path / "recalibration", lambda _c, _r: [str(tmp_path / "no-such-program")])
    with pytest.raises(RunRefused, match="could not start the run process"):
        control.start(tmp_path / "config.yaml")
    (run_id,) = control.run_ids()
    assert control.active() is None and "no-such-program" in control.summary(run_id)["message"]


def test_a_run_started_elsewhere_blocks_a_new_one_while_its_process_lives(tmp_path: Path) -> None:
    control = control_for(tmp_path)
    elsewhere = "20250101T000000000000Z"
    write_progress(control.run_dir(elsewhere), RunProgress(elsewhere, stage="train", pid=os.getpid()))
    assert control.active() == elsewhere
    with pytest.raises(RunRefused, match="still going"):
        control.start(tmp_path / "config.yaml")
    with pytest.raises(RunRefused, match="not a recalibration run"):  # our pid is pytest's: never signalled
        control.cancel(elsewhere)
    write_progress(control.run_dir(elsewhere), RunProgress(elsewhere, stage="train", pid=2**22 + 12345))
    assert control.active() is None
    assert control.summary(elsewhere)["state"] == "failed"


def test_a_finished_run_without_progress_file_reads_from_its_report(tmp_path: Path) -> None:
    control = control_for(tmp_path)
    run_dir = control.run_dir("20250101T000000000000Z")
    run_dir.mkdir(parents=True)
    write_report(run_dir, passed=True, candidate="v0001")
    summary = control.summary(run_dir.name)
    assert (summary["state"], summary["outcome"], summary["candidate"]) == ("finished", "passed", "v0001")


def test_run_ids_are_checked_before_they_name_a_folder(tmp_path: Path) -> None:
    control = control_for(tmp_path)
    for bad in ("../etc", "20250101T000000000000Z/..", ""):
        with pytest.raises(ValueError):
            control.run_dir(bad)


def test_process_checks() -> None:
    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(2**22 + 12345)
    assert not is_recalibration(os.getpid()) and not is_recalibration(2**22 + 12345)
