"""Did a reviewer change a frame, or is a reviewed file still holding what the export wrote?

An export writes each entry's reviewed labels, else the model's predictions (`agent.learn.export`), leaving out
boxes below `--min-score`. A file that comes back with exactly those boxes says nothing about whether a person
looked: importing it must not turn the model's guesses into labels. Boxes are compared in Florence `<loc>` bins
with one bin of slack, because a JSONL round trip moves every coordinate by up to one bin.
"""

from __future__ import annotations

import numpy as np

from agent.detections import Detections
from agent.detector.loc import to_bins

TOLERANCE_BINS = 1


def same_boxes(a: Detections, b: Detections, tolerance_bins: int = TOLERANCE_BINS) -> bool:
    """Same labels and boxes one to one, every coordinate within `tolerance_bins` of its partner."""
    if len(a) != len(b):
        return False
    bins_a, bins_b = to_bins(a), to_bins(b)
    labels_b = b.labels
    unused = list(range(len(b)))
    for row, label in zip(bins_a, a.labels):
        partner = next((j for j in unused if labels_b[j] == label
                        and int(np.abs(bins_b[j] - row).max()) <= tolerance_bins), None)
        if partner is None:
            return False
        unused.remove(partner)
    return True


def exported_variants(shown: Detections) -> list[Detections]:
    """What an export of `shown` may have written: all its boxes, or those scoring at least some `--min-score`
    (never none of them: an empty file for a frame with boxes is a reviewer's "no defect")."""
    if len(shown) == 0:
        return [shown]
    cutoffs = sorted({float(s) for s in shown.score}, reverse=True)
    return [shown[shown.score >= cutoff] for cutoff in cutoffs]


def is_untouched(reviewed: Detections, shown: Detections) -> bool:
    """Whether the `reviewed` boxes are what the export showed (`shown`: the entry's labels, else predictions)."""
    return any(same_boxes(reviewed, variant) for variant in exported_variants(shown))
