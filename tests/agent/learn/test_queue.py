"""The learning queue: what gets stored, quotas, duplicates, disk budget, persistence and exports."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.capture.synthetic import SyntheticGenerator
from agent.capture.worker import Frame
from agent.config import QueueConfig
from agent.detections import Detections
from agent.learn.queue import LearningQueue, QueueError, dhash, hamming, same_predictions

CLASSES = ("scratch", "hole", "stain")
THRESHOLDS = {"scratch": 0.5, "hole": 0.5, "stain": 0.5}
GEN = SyntheticGenerator(seed=5, size=64)


def frame(index: int, camera: str = "cam0", expect: Any = None, part_id: str | None = None) -> Frame:
    return Frame(camera, index, datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=index),
                 GEN.frame(index).image, part_id=part_id, expect=expect)


def unsure(score: float = 0.55, box: tuple[float, ...] = (10, 12, 30, 40)) -> Detections:
    return Detections.from_labels(["scratch"], [box], CLASSES, (64, 64), score=[score])


def config(**overrides: Any) -> QueueConfig:
    base: dict[str, Any] = {"per_minute": 1000, "per_hour": 1000, "per_day": 1000, "dedup_max_distance": 6,
                            "samplers": ["threshold-band", "flagged-miss"]}
    return QueueConfig(**{**base, **overrides})


@pytest.fixture
def queue(tmp_path: Path) -> Any:
    q = LearningQueue(tmp_path / "queue", config())
    yield q
    q.close()


def test_an_unsure_frame_is_stored_lossless_with_its_predictions(queue: LearningQueue) -> None:
    f = frame(1, part_id="P-7")
    result = queue.offer(f, unsure(0.55), THRESHOLDS, model="tiny@1+lora@3")
    assert result and result.entry is not None
    entry = queue.get(result.entry.id)
    assert np.array_equal(queue.image(entry.id), f.image)  # PNG: bit-exact
    assert (entry.camera, entry.frame_id, entry.part_id, entry.model, entry.status) == (
        "cam0", 1, "P-7", "tiny@1+lora@3", "new")
    assert entry.captured_at == f.captured_at
    assert "threshold-band" in entry.reason
    assert entry.detections.labels == ["scratch"]
    assert entry.detections.score[0] == pytest.approx(0.55)
    assert entry.thresholds == THRESHOLDS


def test_confident_frames_are_not_queued_and_the_reason_is_given(queue: LearningQueue) -> None:
    result = queue.offer(frame(1), unsure(0.99), THRESHOLDS)
    assert not result and result.skipped == "no sampler selected this frame"
    assert queue.depth() == 0 and queue.stats["skipped_not-sampled"] == 1


def test_a_flagged_part_without_detections_is_queued_from_the_trigger_expectation(queue: LearningQueue) -> None:
    result = queue.offer(frame(2, expect="fail"), Detections.empty(CLASSES, (64, 64)), THRESHOLDS)
    assert result.entry is not None and "flagged-miss" in result.entry.reason


def test_quota_limits_queued_frames(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config(per_minute=2))
    outcomes = [q.offer(frame(i), unsure(), THRESHOLDS) for i in range(4)]
    assert [bool(o) for o in outcomes] == [True, True, False, False]
    assert outcomes[2].skipped == "per-minute quota of 2 reached"
    q.close()


def test_quota_survives_a_restart(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config(per_minute=2))
    assert q.offer(frame(0), unsure(), THRESHOLDS) and q.offer(frame(1), unsure(), THRESHOLDS)
    q.close()
    again = LearningQueue(tmp_path / "q", config(per_minute=2))
    assert again.offer(frame(2), unsure(), THRESHOLDS).skipped == "per-minute quota of 2 reached"
    again.close()


def test_near_duplicates_are_suppressed_but_new_predictions_are_not(queue: LearningQueue) -> None:
    first = queue.offer(frame(3), unsure(0.55), THRESHOLDS)
    noisy = Frame("cam0", 4, frame(4).captured_at, np.clip(
        frame(3).image.astype(int) + np.random.default_rng(0).integers(-2, 3, frame(3).image.shape), 0, 255
    ).astype(np.uint8))
    again = queue.offer(noisy, unsure(0.58, (11, 12, 31, 41)), THRESHOLDS)
    assert first.entry is not None and again.skipped is not None
    assert again.skipped.startswith(f"near-duplicate of entry {first.entry.id}")
    elsewhere = queue.offer(noisy, unsure(0.55, (40, 40, 60, 60)), THRESHOLDS)  # same view, another defect
    other_camera = queue.offer(frame(3, camera="cam1"), unsure(0.55), THRESHOLDS)
    assert elsewhere and other_camera
    assert queue.depth() == 3


def test_disk_budget_evicts_oldest_first_and_spares_labelled(tmp_path: Path) -> None:
    sizes = []
    q = LearningQueue(tmp_path / "q", config(max_bytes=1024 * 1024))
    big = SyntheticGenerator(seed=9, size=256)
    for i in range(12):
        image = big.frame(i).image
        f = Frame("cam0", i, datetime.now(timezone.utc), image)
        entry = q.offer(f, unsure(), THRESHOLDS).entry
        assert entry is not None
        sizes.append(entry.bytes)
        if i == 0:
            q.set_status(entry.id, "labelled")
    per_frame = max(sizes)
    assert q.total_bytes() <= 1024 * 1024
    kept = [e.id for e in q.list()]
    assert len(kept) < 12  # the budget forced evictions
    assert 1 in kept  # the labelled entry outlived unreviewed ones
    assert kept[-1] == 12 and kept[1:] == list(range(kept[1], 13))  # newest kept, a contiguous run
    assert q.stats["evicted"] == 12 - len(kept)
    assert len(list((tmp_path / "q" / "frames").iterdir())) == len(kept)  # evicted frames' files are gone
    assert per_frame * len(kept) > 1024 * 1024 * 0.5
    q.close()


def test_a_frame_larger_than_the_whole_budget_is_refused_with_a_reason(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config(max_bytes=1024 * 1024))
    noise = np.random.default_rng(1).integers(0, 255, (800, 800, 3), dtype=np.uint8)
    result = q.offer(Frame("cam0", 0, datetime.now(timezone.utc), noise), unsure(), THRESHOLDS)
    assert not result and result.skipped is not None and "exceeds the whole queue budget" in result.skipped
    assert q.depth() == 0 and q.stats["skipped_error"] == 1
    q.close()


def test_entries_and_statuses_persist_across_reopen(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config())
    ids = [q.offer(frame(i), unsure(), THRESHOLDS).entry.id for i in range(3)]  # type: ignore[union-attr]
    q.set_status(ids[1], "rejected")
    q.close()
    again = LearningQueue(tmp_path / "q", config())
    assert [e.id for e in again.list()] == ids
    assert [e.id for e in again.list(status="rejected")] == [ids[1]]
    assert again.offer(frame(0), unsure(), THRESHOLDS).skipped is not None  # recent hashes reloaded too
    again.close()


def test_orphan_frames_from_a_crash_are_removed_on_start(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config())
    q.offer(frame(1), unsure(), THRESHOLDS)
    q.close()
    orphan = tmp_path / "q" / "frames" / "000000099.png"
    orphan.write_bytes(b"half written")
    fresh = tmp_path / "q" / "frames" / "000000100.png"
    fresh.write_bytes(b"another process is committing this one")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    LearningQueue(tmp_path / "q", config()).close()
    assert not orphan.exists() and fresh.exists()
    assert len(list((tmp_path / "q" / "frames").glob("0*.png"))) == 2


def test_unknown_ids_and_statuses_are_named(queue: LearningQueue) -> None:
    with pytest.raises(QueueError, match="42"):
        queue.get(42)
    entry = queue.offer(frame(1), unsure(), THRESHOLDS).entry
    with pytest.raises(QueueError, match="'done'"):
        queue.set_status(entry.id, "done")  # type: ignore[arg-type,union-attr]


def test_purge_by_age_status_and_all(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    q = LearningQueue(tmp_path / "q", config(), clock=lambda: clock[0])
    old = q.offer(frame(1), unsure(), THRESHOLDS).entry
    clock[0] += 3 * 86400
    recent = [q.offer(frame(i), unsure(), THRESHOLDS).entry for i in (2, 3)]
    q.set_status(recent[0].id, "rejected")  # type: ignore[union-attr]
    with pytest.raises(QueueError, match="criterion"):
        q.purge()
    assert q.purge(older_than=timedelta(days=1)) == 1
    assert not old.path.exists()  # type: ignore[union-attr]
    assert q.purge(status="rejected") == 1
    assert q.purge(all=True) == 1 and q.depth() == 0
    q.close()


def test_jsonl_export_is_florence_od_with_the_predictions(queue: LearningQueue, tmp_path: Path) -> None:
    two = Detections.from_labels(["hole", "scratch"], [[30, 40, 50, 60], [10, 5, 20, 15]], CLASSES, (64, 64),
                                 score=[0.55, 0.45])
    entry = queue.offer(frame(1), two, THRESHOLDS).entry
    target = queue.export(tmp_path / "out", "jsonl")
    assert target == tmp_path / "out" / "annotations.jsonl"
    (line,) = [json.loads(text) for text in target.read_text().splitlines()]
    assert set(line) == {"image", "prefix", "suffix"} and line["prefix"] == "<OD>"
    assert line["suffix"] == two.sorted_raster().to_loc_text()
    assert line["suffix"].startswith("scratch<loc_")  # reading order: the upper box first
    restored = Detections.from_loc_text(line["suffix"], CLASSES, (64, 64))
    assert restored.labels == ["scratch", "hole"]
    assert (target.parent / line["image"]).read_bytes() == entry.path.read_bytes()  # type: ignore[union-attr]


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
    assert line["suffix"] == truth.to_loc_text()


def test_min_score_leaves_weak_boxes_out_of_exports(queue: LearningQueue, tmp_path: Path) -> None:
    queue.offer(frame(1), unsure(0.4), THRESHOLDS)
    line = json.loads(queue.export(tmp_path / "x.jsonl", "jsonl", min_score=0.5).read_text())
    assert line["suffix"] == ""


def test_dhash_is_stable_under_noise_and_differs_between_scenes() -> None:
    a, b = GEN.frame(0).image, GEN.frame(1).image
    noisy = np.clip(a.astype(int) + np.random.default_rng(2).integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    assert hamming(dhash(a), dhash(noisy)) <= 6
    assert hamming(dhash(a), dhash(b)) > 6


def test_same_predictions_needs_matching_labels_and_overlap() -> None:
    assert same_predictions(unsure(0.5, (10, 10, 30, 30)), unsure(0.6, (11, 11, 31, 31)))
    assert not same_predictions(unsure(0.5, (10, 10, 30, 30)), unsure(0.5, (40, 40, 60, 60)))
    assert same_predictions(Detections.empty(CLASSES, (64, 64)), Detections.empty(CLASSES, (64, 64)))
    assert not same_predictions(unsure(), Detections.empty(CLASSES, (64, 64)))
