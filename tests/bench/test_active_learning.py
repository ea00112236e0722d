"""How the active-learning experiment (`bench/active_learning.py`) summarises its grid and judges its goal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.active_learning import check_goal, summarise

BASELINE = {"drifted": 0.60, "original": 0.80}


def point(strategy: str, budget: int, seed: int, drifted: float, original: float) -> dict[str, Any]:
    return {"strategy": strategy, "budget": budget, "seed": seed, "map50": {"drifted": drifted, "original": original}}


def grid(band_50: float, band_original: float) -> list[dict[str, Any]]:
    return [point("random", 200, 0, 0.70, 0.80), point("random", 200, 1, 0.72, 0.80),
            point("threshold-band", 25, 0, 0.65, 0.80), point("threshold-band", 50, 0, band_50, band_original),
            point("threshold-band", 100, 0, 0.75, 0.80)]


def test_points_are_summarised_per_strategy_and_budget_over_seeds() -> None:
    summary = summarise(grid(0.71, 0.79))
    cell = summary["random"]["200"]["drifted"]
    assert cell == {"mean": 0.71, "min": 0.70, "max": 0.72, "std": 0.01, "n": 2}


def test_a_point_without_a_candidate_is_left_out_of_the_summary() -> None:
    summary = summarise([{"strategy": "random", "budget": 25, "seed": 0, "outcome": "failed"}])
    assert summary == {}


def test_the_goal_is_met_with_the_fewest_band_labels_that_reach_random_at_200() -> None:
    goal = check_goal(summarise(grid(0.71, 0.79)), BASELINE)
    assert goal["band_labels_to_reach"] == 50
    assert goal["band_forgetting_there"] == 0.01
    assert goal["met"] is True


def test_forgetting_more_than_two_points_misses_the_goal() -> None:
    goal = check_goal(summarise(grid(0.71, 0.75)), BASELINE)
    assert goal["band_labels_to_reach"] == 50
    assert goal["met"] is False


def test_a_band_that_needs_more_than_100_labels_misses_the_goal() -> None:
    points = [p for p in grid(0.60, 0.80) if p["budget"] != 100] + [point("threshold-band", 200, 0, 0.72, 0.80)]
    goal = check_goal(summarise(points), BASELINE)
    assert goal["band_labels_to_reach"] == 200
    assert goal["met"] is False


def test_without_random_at_200_labels_the_goal_is_undecided() -> None:
    points = [p for p in grid(0.71, 0.79) if p["strategy"] != "random"]
    assert check_goal(summarise(points), BASELINE)["decided"] is False


def test_recalibration_settings_from_the_command_line_reach_the_lines_config(tmp_path: Path) -> None:
    from bench.active_learning import parse_args
    from bench.active_learning_scenario import Scenario, line_settings

    args = parse_args(["--recalibration", "lora_vision=true", "epochs=6", "schedule=three-stage"])
    assert dict(args.recalibration) == {"lora_vision": True, "epochs": 6, "schedule": "three-stage"}
    scenario = Scenario(Path("models/demo"), ("scratch", "hole", "stain"), tmp_path, [], [], [], tmp_path / "golden",
                        tmp_path / "replay", recalibration=dict(args.recalibration))
    cfg = line_settings(tmp_path / "state", scenario, seed=1, device="cpu").recalibration
    assert (cfg.lora_vision, cfg.epochs, cfg.schedule, cfg.seed) == (True, 6, "three-stage", 1)


def test_a_recalibration_setting_without_a_value_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.active_learning import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--recalibration", "lora_vision"])
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_the_goal_check_says_the_gap_at_100_labels_and_how_sure_the_seeds_make_it() -> None:
    points = [*(point("random", 200, s, v, 0.80) for s, v in enumerate([0.70, 0.72, 0.74])),
              *(point("threshold-band", 100, s, v, 0.80) for s, v in enumerate([0.69, 0.72, 0.72]))]
    goal = check_goal(summarise(points), BASELINE, points)
    assert goal["gap"] == pytest.approx(-0.01)
    interval = goal["gap_interval"]
    assert interval["low"] < goal["gap"] < interval["high"]
    assert interval["low"] < 0 < interval["high"]  # three seeds this close cannot tell the two apart
    assert interval["seeds"] == {"threshold-band": 3, "random": 3}


def test_seeds_that_agree_give_an_interval_clear_of_zero() -> None:
    points = [*(point("random", 200, s, v, 0.80) for s, v in enumerate([0.70, 0.701, 0.702])),
              *(point("threshold-band", 100, s, v, 0.80) for s, v in enumerate([0.75, 0.751, 0.752]))]
    interval = check_goal(summarise(points), BASELINE, points)["gap_interval"]
    assert 0.048 <= interval["low"] <= interval["high"] <= 0.052


def test_one_seed_gives_a_gap_without_an_interval() -> None:
    points = [*grid(0.71, 0.79)[:1], point("threshold-band", 100, 0, 0.75, 0.80)]
    goal = check_goal(summarise(points), BASELINE, points)
    assert goal["gap"] == pytest.approx(0.05) and "gap_interval" not in goal


def test_every_strategy_but_random_is_judged_against_the_goal_too() -> None:
    points = [*grid(0.60, 0.80), point("diverse-band", 100, 0, 0.73, 0.79), point("diverse-band", 100, 1, 0.74, 0.80),
              point("band-mass", 100, 0, 0.70, 0.80)]
    judged = check_goal(summarise(points), BASELINE, points)["by_strategy"]
    assert set(judged) == {"threshold-band", "diverse-band", "band-mass"}
    assert (judged["diverse-band"]["labels_to_reach"], judged["diverse-band"]["met"]) == (100, True)
    assert judged["diverse-band"]["gap"] == pytest.approx(0.025)
    assert (judged["band-mass"]["labels_to_reach"], judged["band-mass"]["met"]) == (None, False)
