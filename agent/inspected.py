"""`Inspected`: one frame after the detector and the decision, as the results stage and its listeners see it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.capture.worker import Frame
from agent.decide import Decision, Thresholds
from agent.detections import Detections
from agent.publish.result import build_result, uncertain_boxes


@dataclass(frozen=True)
class Inspected:
    """One frame after the detector and the decision."""

    frame: Frame
    detections: Detections  # every box the detector returned (the learning queue wants the unsure ones too)
    decision: Decision
    latency_ms: float
    model: str  # version of the detector that produced it (a reload may swap the detector meanwhile)
    thresholds: Thresholds  # the thresholds the decision used

    def result_payload(self, device: str, image_url: str | None) -> Callable[[int, str], dict[str, Any]]:
        """Its `edge-inspect.result/1` payload, built once the outbox has given it a seq and msg_id."""
        f = self.frame

        def payload(seq: int, msg_id: str) -> dict[str, Any]:
            return build_result(
                seq=seq, msg_id=msg_id, device=device, camera=f.camera, frame_id=f.frame_id, part_id=f.part_id,
                captured_at=f.captured_at, model=self.model, verdict=self.decision.verdict,
                detections=self.decision.defects, latency_ms=self.latency_ms, image_url=image_url,
                uncertain_boxes=uncertain_boxes(self.decision, self.thresholds),
            )

        return payload
