"""`Inspected`: one frame after the detector and the decision, as the results stage and its listeners see it."""

from __future__ import annotations

from dataclasses import dataclass

from agent.capture.worker import Frame
from agent.decide import Decision, Thresholds
from agent.detections import Detections


@dataclass(frozen=True)
class Inspected:
    """One frame after the detector and the decision."""

    frame: Frame
    detections: Detections  # every box the detector returned (the learning queue wants the unsure ones too)
    decision: Decision
    latency_ms: float
    model: str  # version of the detector that produced it (a reload may swap the detector meanwhile)
    thresholds: Thresholds  # the thresholds the decision used
