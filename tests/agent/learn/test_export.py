"""Queue exports: Florence JSONL and COCO, reviewed labels over predictions, weak boxes left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.detections import Detections
from agent.detector.loc import from_loc_text, to_loc_text
from agent.learn.entry import QueueError
from agent.learn.queue import LearningQueue
from tests.agent.learn.helpers import CLASSES, THRESHOLDS, frame, unsure


def test_jsonl_export_is_florence_od_with_the_predictions(queue: LearningQueue, tmp_path: Path) -> None:
    two = Detections.from_labels(["hole", "scratch"], [[30, 40, 50, 60], [10, 5, 20, 15]], CLASSES, (64, 64),
                                 score=[0.55, 0.45])
    entry = queue.offer(frame(1), two, THRESHOLDS).entry
    target = queue.export(tmp_path / "out", "jsonl")
    assert target == tmp_path / "out" / "annotations.jsonl"
    (line,) = [json.loads(text) for text in target.read_text().splitlines()]
    assert set(line) == {"image", "prefix", "suffix"} and line["prefix"] == "<OD>"
    assert line["suffix"] == to_loc_text(two.sorted_raster())
    assert line["suffix"].startswith("scratch<loc_")  # reading order: the upper box first
    restored = from_loc_text(line["suffix"], CLASSES, (64, 64))
    assert restored.labels == ["scratch", "hole"]
    assert (target.parent / line["image"]).read_bytes() == entry.path.read_bytes()  # type: ignore[union-attr]
    assert (target.parent / "classes.txt").read_text().splitlines() == list(CLASSES)  # the model's order, all of them


def test_coco_export_loads_in_a_coco_api(queue: LearningQueue, tmp_path: Path) -> None:
    try:
        from pycocotools.coco import COCO
    except ImportError:
        from faster_coco_eval import COCO
    queue.offer(frame(1), unsure(0.55), THRESHOLDS)
    queue.offer(frame(2, expect="fail"), Detections.empty(CLASSES, (64, 64)), THRESHOLDS)
    rejected = queue.offer(frame(3), unsure(0.45, (1, 1, 9, 9)), THRESHOLDS).entry
    queue.set_status(rejected.id, "rejected")  # type: ignore[union-attr]
    target = queue.export(tmp_path / "coco.json", "coco")
    coco = COCO(str(target))
    assert sorted(coco.getImgIds()) == [1, 2]  # rejected entries are not exported by default
    (ann,) = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert ann["bbox"] == pytest.approx([10, 12, 20, 28])
    assert coco.loadCats(ann["category_id"])[0]["name"] == "scratch"
    assert coco.getAnnIds(imgIds=[2]) == []
    for image in coco.loadImgs([1, 2]):
        assert (tmp_path / image["file_name"]).is_file()


def test_reviewed_labels_replace_predictions_in_exports(queue: LearningQueue, tmp_path: Path) -> None:
    entry = queue.offer(frame(1), unsure(), THRESHOLDS).entry
    truth = Detections.from_labels(["stain"], [[5, 5, 25, 25]], CLASSES, (64, 64))
    queue.set_status(entry.id, "labelled", labels=truth)  # type: ignore[union-attr]
    line = json.loads(queue.export(tmp_path / "x.jsonl", "jsonl").read_text())
    assert line["suffix"] == to_loc_text(truth)


def test_min_score_leaves_weak_boxes_out_of_exports(queue: LearningQueue, tmp_path: Path) -> None:
    queue.offer(frame(1), unsure(0.4), THRESHOLDS)
    line = json.loads(queue.export(tmp_path / "x.jsonl", "jsonl", min_score=0.5).read_text())
    assert line["suffix"] == ""




def test_bad_formats_and_statuses_are_named(queue: LearningQueue, tmp_path: Path) -> None:
    with pytest.raises(QueueError, match="'voc'"):
        queue.export(tmp_path, "voc")  # type: ignore[arg-type]
    with pytest.raises(QueueError, match="'done'"):
        queue.export(tmp_path, "jsonl", statuses=["new", "done"])
