"""A frame whose detections carry instance masks survives the learning queue, and the station's review page shows
its boxes as for any other model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.detections import Detections
from agent.learn.queue import LearningQueue
from agent.masks import mask_boxes
from tests.agent.learn.helpers import CLASSES, THRESHOLDS, config, frame
from tests.agent.station.conftest import make_station


def masked_prediction() -> Detections:
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[0, 10:20, 12:30] = True
    masks[1, 40:50, 40:44] = True
    masks[1, 44:46, 41:43] = False  # a hole in it
    return Detections(mask_boxes(masks), [1, 2], [0.55, 0.9], CLASSES, (64, 64), mask=masks)


def test_masks_survive_the_queue_round_trip_and_a_reopen(tmp_path: Path) -> None:
    queue = LearningQueue(tmp_path / "q", config())
    prediction = masked_prediction()
    result = queue.offer(frame(3), prediction, THRESHOLDS, model="maskrcnn-tiny")
    assert result.entry is not None
    queue.close()
    again = LearningQueue(tmp_path / "q", config())
    stored = again.get(result.entry.id).detections
    assert stored.mask is not None
    np.testing.assert_array_equal(stored.mask, prediction.mask)
    np.testing.assert_array_equal(stored.xyxy, prediction.xyxy)
    assert stored.area_px.tolist() == [180, 36]
    again.close()


def test_the_review_page_shows_the_boxes_of_a_masked_entry(tmp_path: Path) -> None:
    queue = LearningQueue(tmp_path / "q", config())
    entry = queue.offer(frame(4), masked_prediction(), THRESHOLDS).entry
    assert entry is not None
    station = make_station(tmp_path, queue=queue)
    with station.client:
        station.login("tech")
        detail = station.client.get(f"/api/review/entries/{entry.id}").json()
        image = station.client.get(detail["image"])
    queue.close()
    assert [(s["label"], s["box"]) for s in detail["suggestions"]] == [
        ("hole", [12.0, 10.0, 30.0, 20.0]), ("stain", [40.0, 40.0, 44.0, 50.0])]
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
