"""The plot of `bench/active_learning.py`: mAP50 against labels, one line per strategy (mean over seeds, the shaded
band their min-max spread), drifted frames left, original frames (forgetting) right; the demo model dashed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DODGE = 2.0  # labels between strategies drawn at the same budget
SPLITS = (("drifted", "held-out drifted frames"), ("original", "held-out original frames (forgetting)"))


def plot_grid(result: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for axis, (split, title) in zip(axes, SPLITS):
        strategies = result.get("summary", {})
        for index, (strategy, budgets) in enumerate(strategies.items()):
            dodge = (index - (len(strategies) - 1) / 2) * DODGE  # side by side where budgets coincide
            draw_strategy(axis, strategy, budgets, split, dodge)
        if split == "drifted":
            draw_goal(axis, result.get("goal_check", {}).get("random_200_drifted"))
        baseline = result.get("baseline", {}).get(split)
        if baseline is not None:
            axis.axhline(baseline, color="grey", linestyle="--", label="demo model (0 labels)")
        axis.set(title=title, xlabel="labelled frames", ylabel="mAP50")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    figure.suptitle(f"Active learning under drift ({result['settings']['steps']} training steps per point)")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def draw_strategy(axis: Any, strategy: str, budgets: dict[str, dict[str, Any]], split: str,
                  dodge: float = 0.0) -> None:
    """Mean line with markers and the min-max band over seeds, `dodge` labels to the side."""
    cells = sorted((int(budget), cell[split]) for budget, cell in budgets.items() if split in cell)
    if not cells:
        return
    labels = [budget + dodge for budget, _ in cells]
    means = [c["mean"] for _, c in cells]
    line, = axis.plot(labels, means, marker="o", label=strategy)
    axis.fill_between(labels, [c["min"] for _, c in cells], [c["max"] for _, c in cells],
                      color=line.get_color(), alpha=0.18)
    spread = [[m - c["min"] for m, (_, c) in zip(means, cells)], [c["max"] - m for m, (_, c) in zip(means, cells)]]
    axis.errorbar(labels, means, yerr=spread, fmt="none", ecolor=line.get_color(), capsize=4)  # seen at one budget


def draw_goal(axis: Any, target: float | None) -> None:
    """The goal's bar: random's mean at 200 labels (`goal_check`), which the band sampler should reach with <= 100."""
    if target is not None:
        axis.axhline(target, color="black", linestyle=":", label="goal: random's mean at 200 labels")
