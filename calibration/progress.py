"""A run's `progress.json` for watchers (the station's recalibration page), and how a run is cancelled.

`RunWatch` keeps `<run_dir>/progress.json` current through `agent.runs.write_progress`: the stage is the step that
runs, and during `train` step / total_steps / loss / eta_s, rewritten at most every `WRITE_EVERY_S` seconds (a
watcher polling once a second sees every change that matters; a 10 ms training step does not hammer the disk).

Cancelling is cooperative: `cancel()` (or SIGTERM, under `cancel_on_sigterm`) only sets a flag, and the run checks
it at safe points (each step's start, every training step, every evaluated batch) by raising `Cancelled`. A signal
never interrupts a store write half-way, so a cancelled run leaves the model store exactly as it was.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TypeVar

from agent.runs import RunProgress, RunState, write_progress
from calibration.report import Cancelled

WRITE_EVERY_S = 1.0
_T = TypeVar("_T")


class RunWatch:
    """Progress file writer and cancel flag of one run."""

    def __init__(self, run_dir: Path, run_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir = run_dir
        self.progress = RunProgress(run_id)
        self._clock = clock
        self._cancelled = threading.Event()
        self._written_at: float | None = None
        self._train_started: float | None = None
        self._budget_s: float | None = None

    # ----- cancelling ---------------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the run to stop at its next safe point (safe from a signal handler: it only sets a flag)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise `Cancelled` when a cancel was asked for."""
        if self._cancelled.is_set():
            raise Cancelled("cancelled (SIGTERM): stopped before anything was promoted")

    def batches(self, items: Sequence[_T], description: str) -> Iterable[_T]:
        """A `finetune` progress wrapper that checks for a cancel before each item (e.g. each evaluated batch)."""
        for item in items:
            self.check()
            yield item

    # ----- progress -----------------------------------------------------------------------------------------------
    def stage(self, name: str, message: str = "") -> None:
        """A new step begins: always written, training counters cleared."""
        self.progress.stage, self.progress.message = name, message
        self.progress.step, self.progress.total_steps = 0, 0
        self.progress.loss = self.progress.eta_s = None
        self._write()

    def start_training(self, budget_s: float | None) -> None:
        """Training begins now; `budget_s` (the run's time budget) caps the ETA."""
        self._train_started, self._budget_s = self._clock(), budget_s

    def training_step(self, step: int, total: int, metrics: dict[str, float]) -> None:
        """The trainer's progress hook: counters, loss and ETA, written when due; a cancel stops training here."""
        self.check()
        self.progress.step, self.progress.total_steps = step, total
        self.progress.loss = float(metrics["loss"]) if "loss" in metrics else self.progress.loss
        self.progress.eta_s = self._eta(step, total)
        now = self._clock()
        if step >= total or self._written_at is None or now - self._written_at >= WRITE_EVERY_S:
            self._write()

    def _eta(self, step: int, total: int) -> float | None:
        if self._train_started is None or step <= 0:
            return None
        elapsed = self._clock() - self._train_started
        eta = elapsed / step * max(total - step, 0)
        if self._budget_s is not None:  # training stops at its time budget whatever the step count
            eta = min(eta, max(self._budget_s - elapsed, 0.0))
        return round(eta, 1)

    def finish(self, state: RunState, message: str) -> None:
        """The run's last word: finished / failed / cancelled, with the reason."""
        self.progress.state, self.progress.message = state, message
        self.progress.eta_s = None
        self._write()

    def _write(self) -> None:
        with contextlib.suppress(OSError):  # a watcher's view is best effort; the run itself goes on
            write_progress(self.run_dir, self.progress)
            self._written_at = self._clock()


@contextlib.contextmanager
def cancel_on_sigterm(watch: RunWatch) -> Iterator[None]:
    """While inside, SIGTERM cancels the run (cleanly, at its next safe point) instead of killing the process.
    Only the main thread can own signal handlers; elsewhere (tests in threads) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        watch.cancel()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
