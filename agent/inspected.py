"""`Inspected`: one frame after the detector and the decision, as the results stage and its listeners see it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.capture.worker import Frame
from agent.decide import Decision, Thresholds, decide
from agent.detections import Detections
from agent.measure import PlaneMap, box_sizes
from agent.publish.result import boxes_json, build_result, uncertain_boxes, undersized_boxes


@dataclass(frozen=True)
class Inspected:
    """One frame after the detector and the decision."""

    frame: Frame
    detections: Detections  # every box the detector returned (the learning queue wants the unsure ones too)
    decision: Decision
    latency_ms: float
    model: str  # version of the detector that produced it (a reload may swap the detector meanwhile)
    thresholds: Thresholds  # the thresholds the decision used
    geometry: PlaneMap | None = None  # the camera's pixel -> mm geometry for this frame's size; None: no sizes

    @classmethod
    def judge(cls, frame: Frame, dets: Detections, thresholds: Thresholds, geometry: PlaneMap | None,
              latency_ms: float, model: str) -> Inspected:
        """Measure the boxes on the belt plane (when the camera has a geometry) and decide the verdict."""
        sizes = box_sizes(geometry, dets) if geometry is not None else None
        return cls(frame, dets, decide(dets, thresholds, sizes), latency_ms, model, thresholds, geometry)

    def defects_json(self) -> list[dict[str, Any]]:
        """The result's `defects`: the boxes, with their sizes in mm when there is a geometry."""
        return boxes_json(self.decision.defects, self.geometry)

    def result_payload(self, device: str, image_url: str | None) -> Callable[[int, str], dict[str, Any]]:
        """Its `edge-inspect.result/1` payload, built once the outbox has given it a seq and msg_id."""
        f = self.frame

        def payload(seq: int, msg_id: str) -> dict[str, Any]:
            return build_result(
                seq=seq, msg_id=msg_id, device=device, camera=f.camera, frame_id=f.frame_id, part_id=f.part_id,
                captured_at=f.captured_at, model=self.model, verdict=self.decision.verdict,
                detections=self.decision.defects, latency_ms=self.latency_ms, image_url=image_url,
                uncertain_boxes=uncertain_boxes(self.decision, self.thresholds, self.geometry),
                undersized_boxes=undersized_boxes(self.decision, self.thresholds, self.geometry),
                geometry=self.geometry,
            )

        return payload
