"""One grid from several runs of `bench/active_learning.py` (not a test): more seeds run later, or one strategy run
apart from another, summarised, goal-checked and plotted together.

    python -m bench.active_learning_merge --run band-s012.json --run band-s345.json \
        --run grid.json random@200 --out merged.json        # from grid.json only random's 200-label points

Runs merge only when they measured the same thing: the same scenario (drift, pool, held-out and golden sizes, model)
and the same demo-model baseline; a point (strategy, budget, seed) may come from one run only. Training settings may
differ between runs (e.g. 600 steps set by `--steps` in one, by `recalibration.min_steps` in another): each run's
settings are kept under `sources` and each point says which source it came from, so nothing is hidden by the merge.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.active_learning import GOAL, check_goal, summarise
from bench.active_learning_plot import plot_grid


class MergeError(ValueError):
    """Runs that cannot be merged; the message names the file and what differs."""


def merge_runs(runs: Sequence[tuple[Path, dict[str, Any]]],
               cells: Sequence[set[tuple[str, int]] | None] | None = None) -> dict[str, Any]:
    """The merged result: every run's points (only its `cells`, strategy and budget, where given; tagged with their
    source), one summary, one goal check."""
    if not runs:
        raise MergeError("nothing to merge: give at least one result JSON")
    first_path, first = runs[0]
    points: list[dict[str, Any]] = []
    seen: dict[tuple[str, int, int], Path] = {}
    for index, (path, run) in enumerate(runs):
        check_same_measurement(first_path, first, path, run)
        wanted = cells[index] if cells else None
        for point in run.get("points", []):
            key = (point["strategy"], int(point["budget"]), int(point["seed"]))
            if wanted is not None and key[:2] not in wanted:
                continue
            if key in seen:
                raise MergeError(f"{path}: point {key} is also in {seen[key]}; keep it in one run only")
            seen[key] = path
            points.append({**point, "source": index})
    summary = summarise(points)
    return {"scenario": first["scenario"], "baseline": first["baseline"], "goal": GOAL,
            "settings": {"steps": merged_steps(runs, points)},
            "sources": [{"file": path.name, "settings": run["settings"], "node": run.get("node"),
                         "cells": sorted(f"{s}@{b}" for s, b in cells[i]) if cells and cells[i] else "all"}
                        for i, (path, run) in enumerate(runs)],
            "machine": platform.machine(), "node": platform.node(), "points": points, "summary": summary,
            "goal_check": check_goal(summary, first["baseline"], points)}


def check_same_measurement(first_path: Path, first: dict[str, Any], path: Path, run: dict[str, Any]) -> None:
    for key in ("scenario", "baseline"):
        if key not in run:
            raise MergeError(f"{path}: no {key!r}; is it a bench/active_learning.py result?")
        if run[key] != first[key]:
            raise MergeError(f"{path}: its {key} {run[key]} differs from {first_path}'s {first[key]}")


def merged_steps(runs: Sequence[tuple[Path, dict[str, Any]]], points: list[dict[str, Any]]) -> str:
    """The plot title's training length: the runs' own when they agree, else what the merged points trained."""
    steps = {str(run["settings"].get("steps")) for _, run in runs}
    trained = sorted({point.get("train_steps") for point in points} - {None})
    return steps.pop() if len(steps) == 1 else "/".join(str(s) for s in trained) or "mixed"


def parse_cell(text: str) -> tuple[str, int]:
    """`STRATEGY@BUDGET`, e.g. `random@200`."""
    strategy, sep, budget = text.rpartition("@")
    if not sep or not strategy or not budget.isdigit():
        raise MergeError(f"{text!r}: expected STRATEGY@BUDGET, e.g. random@200")
    return strategy, int(budget)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs="+", action="append", required=True, metavar=("JSON", "STRATEGY@BUDGET"),
                        help="a result JSON of bench/active_learning.py, then the cells to take from it (default all)")
    parser.add_argument("--out", type=Path, required=True, help="merged JSON (the plot is written next to it)")
    args = parser.parse_args(argv)
    try:
        cells = [{parse_cell(c) for c in run[1:]} or None for run in args.run]
        runs = [(Path(run[0]), json.loads(Path(run[0]).read_text())) for run in args.run]
        merged = merge_runs(runs, cells)
    except (MergeError, OSError, json.JSONDecodeError) as error:
        parser.error(str(error))
    merged["plot"] = args.out.with_suffix(".png").name
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=2) + "\n")
    plot_grid(merged, args.out.with_suffix(".png"))
    print(json.dumps(merged["goal_check"], indent=2))
    print(f"written: {args.out} and {merged['plot']}")


if __name__ == "__main__":
    main()
