"""Recalibration runs seen from the station: start one (its own low-priority process), watch it, cancel it.

A run is `edge-inspect recalibrate --config <the daemon's config> --run-id <id>` under `nice`, so training never
takes the CPU from inspection; the station imports no training code. It watches a run only through the run files
(`agent/runs.py`: progress.json while it works, report.json at the end) and cancels it with SIGTERM, which the run
turns into a clean "cancelled" end. One run at a time: a run started elsewhere (by hand, by the systemd unit) counts
too, found by its progress.json saying "running" with a live pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.runs import RUN_ID, RunProgress, new_run_id, read_progress, read_report, run_dirs

NICENESS = 10
LOG_FILE = "station-run.log"  # the run process's stdout and stderr, in its run folder
SCAN_RUNS = 20  # only this many newest run folders are checked for a run started elsewhere
RunCommand = Callable[[Path, str], list[str]]  # (config file, run id) -> argv


def recalibrate_command(config: Path, run_id: str) -> list[str]:
    """The same code as `edge-inspect recalibrate`, at a lower CPU priority than the daemon."""
    return ["nice", "-n", str(NICENESS), sys.executable, "-m", "agent.cli", "recalibrate", "--config", str(config),
            "--run-id", run_id, "--no-promote"]  # the technician promotes, on the page


class RunRefused(RuntimeError):
    """A run cannot be started or cancelled now; the message says why and what to do."""


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def is_recalibration(pid: int) -> bool:
    """Whether `pid` runs `recalibrate` (checked before signalling a pid read from a file: pids get reused)."""
    try:
        return b"recalibrate" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class RunControl:
    """Starts, watches and cancels the runs in `runs_dir`; safe to call from the server's threads."""

    def __init__(self, runs_dir: Path, command: RunCommand = recalibrate_command) -> None:
        self.runs_dir = Path(runs_dir)
        self.command = command
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._child_id: str | None = None

    def run_dir(self, run_id: str) -> Path:
        if not RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.runs_dir / run_id

    def start(self, config: Path | None) -> str:
        """Start a run over the daemon's config; returns its id. Refused while a run is going or without a config."""
        if config is None:
            raise RunRefused("the daemon was started without a config file, so a run would not know its model, queue "
                             "and golden set: start the daemon with `edge-inspect run --config FILE`")
        with self._lock:
            busy = self._active()
            if busy is not None:
                raise RunRefused(f"run {busy} is still going: wait for its report or cancel it first")
            run_id = new_run_id()
            run_dir = self.run_dir(run_id)
            run_dir.mkdir(parents=True)
            with (run_dir / LOG_FILE).open("wb") as log:
                try:  # its own session: a Ctrl-C meant for the daemon's terminal does not kill the run half-way
                    self._child = subprocess.Popen(self.command(config, run_id), stdin=subprocess.DEVNULL,
                                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                except OSError as exc:
                    log.write(f"could not start the run process: {exc}\n".encode())
                    raise RunRefused(f"could not start the run process: {exc}") from exc
            self._child_id = run_id
            return run_id

    def active(self) -> str | None:
        """The id of the run that is going now, or None."""
        with self._lock:
            return self._active()

    def _active(self) -> str | None:
        if self._child_id is not None and self._going(self._child_id):
            return self._child_id
        for run_dir in run_dirs(self.runs_dir)[:SCAN_RUNS]:
            progress = read_progress(run_dir)
            if progress is not None and progress.state == "running" and self._alive(run_dir.name, progress.pid):
                return run_dir.name
        return None

    def _going(self, run_id: str) -> bool:
        """Whether run `run_id` still works: its process lives and its progress does not say it ended (a process
        that wrote its last progress may take a few seconds more to exit: it no longer blocks a new run)."""
        progress = read_progress(self.run_dir(run_id))
        if progress is not None and progress.state != "running":
            return False
        return self._alive(run_id, progress.pid if progress is not None else 0)

    def _alive(self, run_id: str, pid: int) -> bool:
        if run_id == self._child_id and self._child is not None:
            return self._child.poll() is None  # our own child: poll() also reaps it once it has ended
        return pid_alive(pid)

    def cancel(self, run_id: str) -> None:
        """SIGTERM to the run's process; the run ends itself as "cancelled" (nothing promoted)."""
        with self._lock:
            if not self._going(run_id):
                raise RunRefused(f"run {run_id} is not running")
            if run_id == self._child_id and self._child is not None:
                self._child.send_signal(signal.SIGTERM)
                return
            progress = read_progress(self.run_dir(run_id))  # a run started elsewhere: its pid is in its progress
            pid = progress.pid if progress is not None else 0
            if not is_recalibration(pid):
                raise RunRefused(f"run {run_id}: process {pid} is not a recalibration run; stop the run where it "
                                 "was started")
            os.kill(pid, signal.SIGTERM)

    def progress(self, run_id: str) -> RunProgress | None:
        """The run's progress as the page should see it: a run still starting up has no progress.json yet, and a
        process that ended without saying so (killed, crashed) is reported failed."""
        with self._lock:
            progress = read_progress(self.run_dir(run_id))
            ours = run_id == self._child_id and self._child is not None
            if progress is None and ours and self._child is not None and self._child.poll() is None:
                return RunProgress(run_id, pid=self._child.pid, message="starting the run process")
            if progress is not None and progress.state == "running" and not self._alive(run_id, progress.pid):
                progress.state = "failed"
                progress.message = self._ended_message(run_id)
            return progress

    def _ended_message(self, run_id: str) -> str:
        code = self._child.returncode if run_id == self._child_id and self._child is not None else None
        tail = f" with exit code {code}" if code is not None else ""
        return f"the run process ended{tail} without finishing; see {LOG_FILE} in its run folder"

    def exit_code(self, run_id: str) -> int | None:
        """The exit code of a run this station started and saw end (None otherwise)."""
        with self._lock:
            if run_id != self._child_id or self._child is None:
                return None
            return self._child.poll()

    def run_ids(self) -> list[str]:
        """Every run folder's id, newest first."""
        return [d.name for d in run_dirs(self.runs_dir)]

    def summary(self, run_id: str) -> dict[str, Any]:
        """One row of the run list: where it is (or how it ended) and what its report concluded."""
        progress = self.progress(run_id)
        report = read_report(self.run_dir(run_id)) or {}
        row: dict[str, Any] = progress.to_json() if progress is not None else {"run_id": run_id}
        if progress is None:  # a run from before progress files, or a process that died before writing any
            row["state"] = "finished" if report else "failed"
            row["message"] = "" if report else "the run left no progress and no report"
        if row["state"] == "failed" and not report:
            row["message"] = "; ".join(filter(None, [row.get("message"), self.log_tail(run_id)]))
        gate = report.get("gate") or {}
        row.update(outcome=report.get("outcome"), reason=report.get("reason"), candidate=report.get("candidate"),
                   gate_passed=gate.get("passed") if gate else None)
        return row

    def log_tail(self, run_id: str, lines: int = 3) -> str:
        """The last lines the run process printed (why a run died before writing its report)."""
        try:
            with (self.run_dir(run_id) / LOG_FILE).open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])
