"""How unsure the model was about a queued frame, so reviewers see the most useful frames first.

The margin of a box is |score - its class threshold|: 0 means the model could not tell defect from no defect. The
margin of a frame is the smallest margin over its boxes. A frame without boxes (queued because the line flagged the
part, or at random) has the margin of "every class scored 0": its lowest class threshold. Review order is smallest
margin first, oldest first among equals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from agent.detections import Detections
from agent.learn.entry import QueueEntry

DEFAULT_THRESHOLD = 0.5  # a class missing from an entry's thresholds (never stored by the daemon) counts as 0.5


def box_margins(entry: QueueEntry) -> list[float]:
    """|score - class threshold| of each predicted box, in the stored order."""
    return [float(v) for v in detections_box_margins(entry.detections, entry.thresholds)]


def detections_box_margins(detections: Detections, thresholds: Mapping[str, float]) -> np.ndarray:
    """`box_margins` of predictions not (yet) queued."""
    return np.abs(detections.score - detections.box_thresholds(thresholds, DEFAULT_THRESHOLD))


def margin(entry: QueueEntry) -> float:
    """The frame's margin: the smallest box margin, or the lowest class threshold when there is no box."""
    return detections_margin(entry.detections, entry.thresholds)


def detections_margin(detections: Detections, thresholds: Mapping[str, float]) -> float:
    """`margin` of predictions not (yet) queued: what a frame's review rank would be if it were."""
    if len(detections):
        return float(np.min(detections_box_margins(detections, thresholds)))
    limits_of_classes = [thresholds.get(name, DEFAULT_THRESHOLD) for name in detections.class_names]
    return float(min(limits_of_classes, default=DEFAULT_THRESHOLD))


def most_unsure_first(entries: Iterable[QueueEntry]) -> list[QueueEntry]:
    """The entries in review order: smallest margin first, then by id (oldest first)."""
    return sorted(entries, key=lambda entry: (margin(entry), entry.id))
