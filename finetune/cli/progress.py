"""The one training progress bar of the CLI (`model train`, `model demo`): steps, elapsed, remaining, the loss.

On a terminal it is a rich bar; anywhere else (a log file, `nohup`, systemd's journal, CI) a bar would print nothing
until the end, so a plain line is written every `PLAIN_EVERY_S` seconds and at the last step instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from finetune.tiny_train.trainer import Progress as StepReport

PLAIN_EVERY_S = 30.0


@contextmanager
def training_bar(steps: int, console: Console | None = None) -> Iterator[StepReport]:
    """A progress display for `steps` training steps; yields the trainer's progress callback that moves it."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield plain_progress(console.print)
        return
    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[loss]}"))
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=steps, loss="")

        def report(step: int, total: int, values: dict[str, float]) -> None:
            bar.update(task, completed=step, loss=f"loss {values['loss']:.3f}")

        yield report


def plain_progress(write: Callable[[str], object], every_s: float = PLAIN_EVERY_S,
                   clock: Callable[[], float] = time.monotonic) -> StepReport:
    """A callback writing `training step N/M, loss L, elapsed, ETA` lines: the first step, then at most once per
    `every_s` seconds, and the last step."""
    started = clock()
    last: list[float | None] = [None]

    def report(step: int, total: int, values: dict[str, float]) -> None:
        now = clock()
        if step < total and last[0] is not None and now - last[0] < every_s:
            return
        last[0] = now
        elapsed = now - started
        eta = elapsed / step * (total - step) if step else 0.0
        write(f"training step {step}/{total}, loss {values['loss']:.3f}, elapsed {_clock(elapsed)}, "
              f"remaining ~{_clock(eta)}")

    return report


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
