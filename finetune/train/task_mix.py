"""The task mix of a run: which of the data's tasks each step trains, in a fixed, resumable order.

A training set has up to three pools: its `<OD>` frames (`od`), its `<DENSE_REGION_CAPTION>` lines (`dense`) and its
`<CAPTION_TO_PHRASE_GROUNDING>` lines (`grounding`). A mix is an ordered list of (task, weight); one cycle of the
schedule lists every task `weight` times, spread out by smooth weighted round robin (ties in the order written), and
step `s` trains the task at `s mod cycle length` on one batch drawn from that task's pool only: od=2,dense=1,
grounding=1 gives od, dense, grounding, od, od, dense, ... Each pool is walked in its own per-epoch permutation, a
pure function of (seed, task, how many batches that task has had), so `--resume` continues exactly.

The default (`DEFAULT_MIX`, used when the data holds region-task lines and no mix is given) keeps half of the steps on
`<OD>`, the task the daemon serves, and shares the rest between the two auxiliary tasks, which teach the same
decoder to tie free text and given phrases to `<loc>` boxes. A set with `<OD>` frames only trains `<OD>` only, batch
for batch as before the mix existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from finetune.train.batches import batch_indices
from finetune.train.config import MIX_TASKS, TrainError, check_mix

DEFAULT_MIX: tuple[tuple[str, int], ...] = (("od", 2), ("dense", 1), ("grounding", 1))
_Item = TypeVar("_Item")


def parse_task_mix(text: str) -> tuple[tuple[str, int], ...]:
    """`od=2,dense=1,grounding=1` (weights) or `od,dense,grounding` (one each) -> ((task, weight), ...); a bad entry is
    a `TrainError` naming it."""
    mix = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, _, weight = entry.partition("=")
        try:
            mix.append((name.strip(), int(weight) if weight.strip() else 1))
        except ValueError:
            raise TrainError(f"task mix entry {entry!r}: the weight must be a whole number, e.g. od=2") from None
    check_mix(tuple(mix))
    return tuple(mix)


def resolve_mix(requested: tuple[tuple[str, int], ...] | None, sizes: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """The mix a run uses: `requested`, else `DEFAULT_MIX` over the pools that have items (od alone: od only). A
    requested task whose pool is empty is a `TrainError`: it would train nothing."""
    if requested is None:
        present = tuple((name, weight) for name, weight in DEFAULT_MIX if sizes.get(name))
        return present if len(present) > 1 else tuple((name, 1) for name, _ in present)
    empty = [name for name, weight in requested if weight > 0 and not sizes.get(name)]
    if empty:
        raise TrainError(f"task mix names {empty}, but the training set has no such lines (pools: {sizes})")
    return tuple((name, weight) for name, weight in requested if weight > 0)


def cycle_of(mix: tuple[tuple[str, int], ...]) -> list[str]:
    """One cycle: each task `weight` times, spread by smooth weighted round robin (ties: the order written)."""
    total = sum(weight for _, weight in mix)
    current = dict.fromkeys((name for name, _ in mix), 0)
    order = []
    for _ in range(total):
        for name, weight in mix:
            current[name] += weight
        chosen = max(current, key=lambda name: current[name])  # first of the largest: the order written
        current[chosen] -= total
        order.append(chosen)
    return order


@dataclass
class TaskMix(Generic[_Item]):
    """Pools by task, the mix over them, and which batch each step trains (a pure function of seed and step)."""

    pools: Mapping[str, Sequence[_Item]]
    mix: tuple[tuple[str, int], ...]
    cycle: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.cycle = cycle_of(self.mix)

    @property
    def items(self) -> int:
        """Items in the pools the mix trains (what one epoch covers)."""
        return sum(len(self.pools[name]) for name, _ in self.mix)

    def task_at(self, step: int) -> tuple[str, int]:
        """(the task step `step` trains, how many batches of that task came before it)."""
        turns, position = divmod(step, len(self.cycle))
        task = self.cycle[position]
        return task, turns * self.cycle.count(task) + self.cycle[:position].count(task)

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[str, list[_Item]]:
        """The task of `step` and its batch: that pool's `batch_indices` at the task's own count (od: stream 0, as a
        run without region tasks draws)."""
        task, count = self.task_at(step)
        pool = self.pools[task]
        indices = batch_indices(len(pool), batch_size, seed, count, MIX_TASKS.index(task))
        return task, [pool[i] for i in indices]

    def describe(self) -> dict[str, object]:
        return {"mix": dict(self.mix), "cycle": self.cycle, "pools": {k: len(v) for k, v in self.pools.items()}}
