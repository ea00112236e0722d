"""Training progress: a rich bar on a terminal; plain, throttled lines with the loss and the time left elsewhere (a log
file or the journal would otherwise show nothing until training ends)."""

from __future__ import annotations

import io

from rich.console import Console

from finetune.cli.progress import plain_progress, training_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_at_the_first_step_then_at_most_every_interval_and_at_the_end() -> None:
    lines: list[str] = []
    clock = FakeClock()
    report = plain_progress(lines.append, every_s=30.0, clock=clock)
    for step in range(1, 11):
        clock.now += 10.0
        report(step, 10, {"loss": 1.0 / step})
    assert [line.split(",")[0] for line in lines] == ["training step 1/10", "training step 4/10",
                                                      "training step 7/10", "training step 10/10"]
    assert lines[0] == "training step 1/10, loss 1.000, elapsed 0:00:10, remaining ~0:01:30"
    assert lines[-1].endswith("loss 0.100, elapsed 0:01:40, remaining ~0:00:00")


def test_a_console_that_is_not_a_terminal_gets_plain_lines() -> None:
    out = io.StringIO()
    with training_bar(3, Console(file=out, force_terminal=False, width=200)) as report:
        for step in (1, 2, 3):
            report(step, 3, {"loss": 0.5})
    text = out.getvalue()
    assert "training step 1/3, loss 0.500" in text and "training step 3/3, loss 0.500" in text
    assert "━" not in text  # no bar characters in a log


def test_a_terminal_gets_the_rich_bar() -> None:
    out = io.StringIO()
    with training_bar(3, Console(file=out, force_terminal=True, width=200)) as report:
        for step in (1, 2, 3):
            report(step, 3, {"loss": 0.5})
    text = out.getvalue()
    assert "3/3" in text and "loss 0.500" in text and "training step" not in text
