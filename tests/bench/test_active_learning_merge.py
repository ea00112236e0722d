"""How runs of the active-learning experiment merge into one grid (`bench/active_learning_merge.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.active_learning_merge import MergeError, main, merge_runs

SCENARIO = {"drift": {"defect_scale": 0.7}, "pool": 1000, "held_out": 200, "model": "models/demo"}
BASELINE = {"drifted": 0.645, "original": 0.78}


def run(points: list[tuple[str, int, int, float]], steps: Any = "recalibration.epochs",
        scenario: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"scenario": scenario or SCENARIO, "baseline": BASELINE, "settings": {"steps": steps},
            "points": [{"strategy": s, "budget": b, "seed": seed, "train_steps": 600,
                        "map50": {"drifted": v, "original": 0.85}} for s, b, seed, v in points]}


def test_points_of_several_runs_are_summarised_and_goal_checked_together() -> None:
    merged = merge_runs([(Path("a.json"), run([("threshold-band", 100, 0, 0.74), ("random", 200, 0, 0.73)])),
                         (Path("b.json"), run([("threshold-band", 100, 1, 0.72), ("random", 200, 1, 0.75)], 600))])
    assert merged["summary"]["threshold-band"]["100"]["drifted"]["n"] == 2
    assert [p["source"] for p in merged["points"]] == [0, 0, 1, 1]
    assert [s["settings"]["steps"] for s in merged["sources"]] == ["recalibration.epochs", 600]
    assert merged["settings"]["steps"] == "600"  # the plot's title: what the points trained, set either way
    assert merged["goal_check"]["random_200_drifted"] == pytest.approx(0.74)
    assert merged["goal_check"]["gap"] == pytest.approx(-0.01)


def test_only_the_cells_asked_for_are_taken_from_a_run() -> None:
    merged = merge_runs([(Path("a.json"), run([("threshold-band", 100, 0, 0.74)])),
                         (Path("grid.json"), run([("threshold-band", 100, 0, 0.65), ("random", 200, 0, 0.73)]))],
                        [None, {("random", 200)}])
    assert [(p["strategy"], p["map50"]["drifted"]) for p in merged["points"]] == [("threshold-band", 0.74),
                                                                                   ("random", 0.73)]
    assert merged["sources"][1]["cells"] == ["random@200"]


def test_a_point_in_two_runs_is_refused_naming_both() -> None:
    with pytest.raises(MergeError, match=r"b.json: point \('random', 200, 0\) is also in a.json"):
        merge_runs([(Path("a.json"), run([("random", 200, 0, 0.73)])),
                    (Path("b.json"), run([("random", 200, 0, 0.7)]))])


def test_runs_of_different_scenarios_are_refused() -> None:
    other = {**SCENARIO, "pool": 300}
    with pytest.raises(MergeError, match="b.json: its scenario .* differs from a.json"):
        merge_runs([(Path("a.json"), run([("random", 200, 0, 0.73)])),
                    (Path("b.json"), run([("random", 200, 1, 0.7)], scenario=other))])


def test_the_command_writes_the_merged_json_and_its_plot(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(run([("threshold-band", 100, 0, 0.74), ("random", 100, 0, 0.7)])))
    (tmp_path / "b.json").write_text(json.dumps(run([("random", 200, 0, 0.73)])))
    out = tmp_path / "merged.json"
    main(["--run", str(tmp_path / "a.json"), "--run", str(tmp_path / "b.json"), "random@200", "--out", str(out)])
    merged = json.loads(out.read_text())
    assert merged["goal_check"]["band_labels_to_reach"] == 100 and out.with_suffix(".png").stat().st_size > 0


def test_a_malformed_cell_is_refused_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.json").write_text(json.dumps(run([("random", 200, 0, 0.73)])))
    with pytest.raises(SystemExit):
        main(["--run", str(tmp_path / "a.json"), "random200", "--out", str(tmp_path / "m.json")])
    assert "'random200': expected STRATEGY@BUDGET" in capsys.readouterr().err
