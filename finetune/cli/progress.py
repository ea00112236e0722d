"""The one training progress bar of the CLI (`model train`, `model demo`): steps, elapsed, remaining, the loss."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from finetune.tiny_train.trainer import Progress as StepReport


@contextmanager
def training_bar(steps: int, console: Console | None = None) -> Iterator[StepReport]:
    """A rich bar for `steps` training steps; yields the trainer's progress callback that moves it."""
    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[loss]}"))
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=steps, loss="")

        def report(step: int, total: int, values: dict[str, float]) -> None:
            bar.update(task, completed=step, loss=f"loss {values['loss']:.3f}")

        yield report
