"""The plot of `bench/active_learning.py`: mAP50 against labels, one line per strategy (mean over seeds, the shaded
band their min-max spread), drifted frames left, original frames (forgetting) right; the demo model dashed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPLITS = (("drifted", "held-out drifted frames"), ("original", "held-out original frames (forgetting)"))


def plot_grid(result: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for axis, (split, title) in zip(axes, SPLITS):
        for strategy, budgets in result.get("summary", {}).items():
            draw_strategy(axis, strategy, budgets, split)
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


def draw_strategy(axis: Any, strategy: str, budgets: dict[str, dict[str, Any]], split: str) -> None:
    """Mean line with markers and the min-max band over seeds."""
    cells = sorted((int(budget), cell[split]) for budget, cell in budgets.items() if split in cell)
    if not cells:
        return
    labels = [budget for budget, _ in cells]
    line, = axis.plot(labels, [c["mean"] for _, c in cells], marker="o", label=strategy)
    axis.fill_between(labels, [c["min"] for _, c in cells], [c["max"] for _, c in cells],
                      color=line.get_color(), alpha=0.18)
