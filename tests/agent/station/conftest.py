"""A station app on a `StaticBackend` with one viewer and one technician, a learning queue to review, and helpers to
log in and feed frames."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agent.capture.synthetic import SyntheticGenerator
from agent.capture.worker import Frame
from agent.config import QueueConfig
from agent.detections import Detections
from agent.learn.queue import LearningQueue
from agent.station.app import create_app
from agent.station.audit import AuditLog
from agent.station.backend import CameraInfo, StaticBackend
from agent.station.config import StationConfig
from agent.station.guards import CSRF_HEADER
from agent.station.live import LiveBoard

# cheap argon2 parameters: the hash carries them, so verifying test passwords stays fast
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
PASSWORDS = {"tech": "correct horse battery", "view": "viewer secret 42"}
CLASSES = ("scratch", "hole", "stain")


def user_entry(name: str, role: str) -> dict[str, Any]:
    return {"name": name, "role": role, "password_hash": FAST_HASHER.hash(PASSWORDS[name])}


def station_config(**overrides: Any) -> StationConfig:
    fields: dict[str, Any] = {"users": [user_entry("tech", "technician"), user_entry("view", "viewer")]}
    return StationConfig.model_validate({**fields, **overrides})


def detections(labels: list[str], scores: list[float], size: tuple[int, int] = (320, 240)) -> Detections:
    boxes = [[20 + 40 * i, 30, 60 + 40 * i, 90] for i in range(len(labels))]
    return Detections.from_labels(labels, np.asarray(boxes).reshape(-1, 4), CLASSES, size, score=scores)


def feed(board: LiveBoard, camera: str = "cam0", verdict: str = "fail", frame_id: int = 1,
         labels: tuple[str, ...] = ("scratch",)) -> None:
    """One inspected 320x240 frame with `labels` boxes into `board`."""
    image = np.full((240, 320, 3), 40 + (frame_id * 13) % 180, dtype=np.uint8)
    board.update(camera, image, detections(list(labels), [0.8] * len(labels)), verdict, frame_id,
                 datetime.now(timezone.utc))


THRESHOLDS = {"scratch": 0.5, "hole": 0.5, "stain": 0.5}
QUEUE_SIZE = (320, 240)


def queue_frame(index: int) -> Frame:
    """A distinct 320x240 frame (no two are near-duplicates)."""
    image = SyntheticGenerator(seed=index, size=320).frame(index).image[:240]
    return Frame("cam0", index, datetime(2025, 1, 1, tzinfo=timezone.utc), image)


def fill_queue(directory: Path, predictions: list[Detections], golden_fraction: float = 0.0,
               review_order: str = "unsure") -> LearningQueue:
    """A learning queue holding one entry per `predictions` (ids 1, 2, ...), all `new`."""
    queue = LearningQueue(directory, QueueConfig(per_minute=1000, per_hour=1000, per_day=1000, band=0.5,
                                                 dedup_max_distance=0, golden_fraction=golden_fraction,
                                                 review_order=review_order))
    for index, dets in enumerate(predictions):
        offered = queue.offer(queue_frame(index), dets, THRESHOLDS, flagged=True, model="tiny@1")
        assert offered.entry is not None and offered.entry.id == index + 1, offered.skipped
    return queue


def scratch_at(score: float, box: tuple[float, float, float, float] = (40, 50, 120, 110)) -> Detections:
    return Detections.from_labels(["scratch"], [box], CLASSES, QUEUE_SIZE, score=[score])


@dataclass
class Station:
    app: FastAPI
    client: TestClient
    board: LiveBoard
    backend: StaticBackend
    audit_path: Path
    queue: LearningQueue | None = None

    def login(self, name: str = "tech") -> dict[str, Any]:
        response = self.client.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def csrf(self) -> dict[str, str]:
        return {CSRF_HEADER: self.client.get("/api/me").json()["csrf_token"]}

    def audit_lines(self) -> list[str]:
        return self.audit_path.read_text().splitlines() if self.audit_path.exists() else []

    def audit_entries(self, action: str) -> list[dict[str, Any]]:
        return [entry for line in self.audit_lines() if (entry := json.loads(line))["action"] == action]


def make_station(tmp_path: Path, config: StationConfig | None = None, queue: LearningQueue | None = None) -> Station:
    board = LiveBoard(recent=4)
    backend = StaticBackend(camera_infos={"cam0": CameraInfo("online", "", {"frames": 5, "dropped": 1})},
                            version="base+v0003")
    audit = AuditLog.in_state_dir(tmp_path / "state")
    app = create_app(config or station_config(), backend, board, audit, queue)
    return Station(app, TestClient(app), board, backend, audit.path, queue)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    made = make_station(tmp_path)
    with made.client:
        yield made


@pytest.fixture
def reviewing(tmp_path: Path) -> Iterator[Station]:
    """A station over a queue of three entries: one scratch each, scored 0.9, 0.52 and 0.3 (thresholds 0.5)."""
    queue = fill_queue(tmp_path / "queue", [scratch_at(0.9), scratch_at(0.52), scratch_at(0.3, (10, 10, 30, 30))])
    made = make_station(tmp_path, queue=queue)
    with made.client:
        yield made
    queue.close()
