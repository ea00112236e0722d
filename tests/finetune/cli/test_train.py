"""`edge-inspect finetune`: the training-recipe flags, their help, and how they become `TrainConfig` fields."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from finetune.cli.train import Schedule, recipe_options
from finetune.train.config import SCHEDULES, AugmentSettings, TrainConfig


def test_schedule_choices_match_the_trainers() -> None:
    assert tuple(choice.value for choice in Schedule) == SCHEDULES


def test_the_recipe_is_off_unless_asked_for() -> None:
    off = TrainConfig(**recipe_options(False, 0.0, 2.0, Schedule.cosine))
    assert off == TrainConfig()
    on = TrainConfig(**recipe_options(True, 0.2, 3.0, Schedule.three_stage))
    assert on.augment == AugmentSettings() and on.hard_fraction == 0.2 and on.hard_weight == 3.0
    assert on.schedule == "three-stage"


def test_help_lists_the_recipe_flags() -> None:
    from agent.cli import app

    result = CliRunner().invoke(app, ["finetune", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--augment", "--hard-examples", "--hard-weight", "--schedule", "three-stage"):
        assert flag in result.output


def test_a_bad_task_mix_is_refused_naming_it_before_anything_loads(tmp_path: Path) -> None:
    from agent.cli import app

    result = CliRunner().invoke(app, ["finetune", "--model", str(tmp_path / "none"), "--data", str(tmp_path),
                                      "--out", str(tmp_path / "out"), "--task-mix", "od=2,caption=1"])
    assert result.exit_code == 2
    assert "task mix ['od', 'caption']: each of ['od', 'dense', 'grounding'] at most once" in result.output
    assert not (tmp_path / "out").exists()


def test_a_part_that_cannot_be_carried_whole_is_refused_naming_it_before_anything_loads(tmp_path: Path) -> None:
    from agent.cli import app

    result = CliRunner().invoke(app, ["finetune", "--model", str(tmp_path / "none"), "--data", str(tmp_path),
                                      "--out", str(tmp_path / "out"), "--whole", "vision_tower",
                                      "--whole", "language_model"])
    assert result.exit_code == 2
    assert "whole parts ['language_model']: an adapter can carry only ['vision_tower', 'multi_modal_projector']" \
        in result.output
    assert not (tmp_path / "out").exists()
