"""How much of a golden-set mAP50 change is noise: a percentile bootstrap over golden frames.

A golden set of a few dozen frames measures mAP50 with an error of several points, so a candidate that scores 0.02
higher may be no better at all. Resampling the frames with replacement (the same resample for both models, so what
varies is the set, not the pairing) and recomputing both mAP50s gives the spread of the change; the gate promotes
only when the interval's lower bound is above zero. Seeded: the same run judges the same way every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.detections import Detections
from finetune.metrics import coco_metrics

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """The mAP50 change (candidate - current) on the whole golden set and its bootstrap interval."""

    delta: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def map50_delta_interval(
    ground_truth: Sequence[Detections],
    current: Sequence[Detections],
    candidate: Sequence[Detections],
    class_names: Sequence[str],
    resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Percentile bootstrap of mAP50(candidate) - mAP50(current) over golden frames (COCO mAP50, as the report's)."""
    if not (len(ground_truth) == len(current) == len(candidate)) or not ground_truth:
        raise ValueError(f"need one prediction list per golden frame: {len(ground_truth)} frames, "
                         f"{len(current)} current and {len(candidate)} candidate predictions")
    delta = _map50(ground_truth, candidate, class_names) - _map50(ground_truth, current, class_names)
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for k in range(resamples):
        chosen = rng.integers(0, len(ground_truth), len(ground_truth))
        truth = [ground_truth[i] for i in chosen]
        deltas[k] = (_map50(truth, [candidate[i] for i in chosen], class_names)
                     - _map50(truth, [current[i] for i in chosen], class_names))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return Interval(delta, float(low), float(high), confidence, resamples, seed)


def _map50(ground_truth: Sequence[Detections], predictions: Sequence[Detections], class_names: Sequence[str]
           ) -> float:
    return coco_metrics(ground_truth, predictions, class_names).map50
