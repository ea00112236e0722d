"""Building an edge node on a real outbox, and storing results in it, for the Sparkplug tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import MqttConfig
from agent.detections import Detections
from agent.publish.outbox import Outbox
from agent.publish.result import build_result
from agent.sparkplug.metrics import NodeInfo
from agent.sparkplug.node import EdgeNode, SparkplugTopics
from agent.statedir import StateDir
from tests.agent.sparkplug.conftest import GROUP
from tests.fixtures.broker import Broker

CLASSES = ["scratch", "hole", "stain"]
CAMERAS = {"cam0": "free-run", "gate": "trigger"}


class Triggers:
    """Stands in for the daemon's handshake: records each trigger and answers `answer`."""

    def __init__(self, answer: str = "accepted") -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.answer = answer

    def __call__(self, camera: str, part_id: str | None) -> str:
        self.calls.append((camera, part_id))
        return self.answer


def make_node(broker: Broker, state: Path, outbox: Outbox, triggers: Triggers | None = None,
              allow_commands: bool = False) -> EdgeNode:
    mqtt = MqttConfig(port=broker.port, keepalive=5, reconnect_min_s=0.5, reconnect_max_s=1)
    return EdgeNode(SparkplugTopics(GROUP, "box-1"), mqtt, "box-1-sparkplug", NodeInfo("9.9.9", "box-1"),
                    CAMERAS, outbox, StateDir(state).sparkplug, triggers or Triggers(), allow_commands)


def open_outbox(state: Path) -> Outbox:
    return Outbox(StateDir(state).outbox, max_bytes=16 * 1024 * 1024)


def store_results(outbox: Outbox, specs: list[tuple[str, str, list[str]]], part_id: str | None = None
                  ) -> list[dict[str, Any]]:
    """Store one result per (camera, verdict, defect labels); returns the stored JSON payloads, in seq order."""
    entries = []
    for index, (camera, verdict, labels) in enumerate(specs):
        boxes = np.array([[4.0 + i, 6.0 + i, 20.5 + i, 30.0 + i] for i in range(len(labels))]).reshape(-1, 4)
        scores = [0.91 - 0.1 * i for i in range(len(labels))]
        dets = Detections.from_labels(labels, boxes, CLASSES, (64, 48), score=scores)

        def build(seq: int, msg_id: str, camera: str = camera, verdict: str = verdict, dets: Detections = dets,
                  frame: int = index) -> dict[str, Any]:
            return build_result(seq=seq, msg_id=msg_id, device="box-1", camera=camera, frame_id=frame,
                                part_id=part_id, captured_at=time.time() - 1.5, model="tiny@v0003",
                                verdict=verdict, detections=dets, latency_ms=12.25 + frame)  # type: ignore[arg-type]

        entries.append((f"edge-inspect/box-1/cameras/{camera}/result", build))
    seqs = [stored[0] for stored in outbox.append_many(entries) if isinstance(stored, tuple)]
    assert len(seqs) == len(specs)
    return [json.loads(row.payload) for row in outbox.since(seqs[0] - 1, len(seqs))]
