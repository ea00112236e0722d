"""Per-class thresholds -> a verdict for the line: `pass`, `fail` or `uncertain`.

A box counts as a defect when its score reaches its class threshold. A box whose score lies within `band` of the
threshold (on either side) is one the model is unsure about: the frame is `uncertain` unless a confident defect
already fails it. The line's PLC decides what `uncertain` means (re-inspect, divert, stop).

With per-class size rules (`model.size_rules`) and the boxes' sizes on the belt (`agent.measure`), a box below its
class's rule is not a defect however high it scores: it is reported as `undersized` and neither fails the part nor
makes it uncertain. Without sizes (no camera geometry) the rules cannot apply and boxes are judged by score alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from agent.detections import Detections
from agent.measure import Size, SizeRule, big_enough

Verdict = Literal["pass", "fail", "uncertain"]


@dataclass(frozen=True)
class Thresholds:
    """Threshold per class name, with a default for classes not listed."""

    per_class: Mapping[str, float]
    default: float = 0.5
    band: float = 0.1
    size_rules: Mapping[str, SizeRule] = field(default_factory=dict)  # per class; classes not listed: no minimum

    def of(self, label: str) -> float:
        return self.per_class.get(label, self.default)

    def for_classes(self, class_names: Sequence[str]) -> dict[str, float]:
        """The threshold of every class, e.g. for the learning queue's samplers."""
        return {name: self.of(name) for name in class_names}

    def for_detections(self, dets: Detections) -> np.ndarray:
        """The threshold that applies to each box of `dets` (the same rule as `Detections.above`)."""
        return dets.box_thresholds(self.per_class, self.default)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    defects: Detections  # boxes at or above their threshold: what the result message reports
    uncertain: Detections  # boxes within the band of their threshold: what the learning queue wants
    undersized: Detections  # boxes at or above their threshold but below their class's size rule: not defects


def decide(dets: Detections, thresholds: Thresholds, sizes: Sequence[Size] | None = None) -> Decision:
    """Split boxes into defects, uncertain and undersized ones and derive the frame's verdict; `sizes` (one per box,
    on the belt plane) lets `thresholds.size_rules` apply."""
    limits = thresholds.for_detections(dets)
    large = big_enough(dets, thresholds.size_rules, sizes)
    scored = dets.score >= limits
    is_defect = scored & large
    near = (np.abs(dets.score - limits) < thresholds.band) & large
    confident_defect = is_defect & ~near
    if confident_defect.any():
        verdict: Verdict = "fail"
    elif near.any():
        verdict = "uncertain"
    else:
        verdict = "pass"
    return Decision(verdict, dets[is_defect], dets[near], dets[scored & ~large])
