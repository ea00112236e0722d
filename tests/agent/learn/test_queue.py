"""The learning queue: what gets stored, quotas, duplicates, disk budget and persistence."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from agent.capture.synthetic import SyntheticGenerator
from agent.capture.worker import Frame
from agent.detections import Detections
from agent.learn.entry import QueueError, ReviewRecord
from agent.learn.queue import LearningQueue
from tests.agent.learn.helpers import CLASSES, THRESHOLDS, config, frame, unsure


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


def test_a_review_with_a_reviewer_is_verified_and_timed(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config(), clock=lambda: 1_735_689_600.0)  # 2025-01-01T00:00:00Z
    entry = q.offer(frame(1), unsure(), THRESHOLDS).entry
    assert entry is not None and (entry.verified, entry.reviewer, entry.reviewed_at) == (False, None, None)
    reviewed = q.set_status(entry.id, "labelled", unsure(1.0), reviewer="tech")
    assert (reviewed.status, reviewed.verified, reviewed.reviewer) == ("labelled", True, "tech")
    assert reviewed.reviewed_at == datetime(2025, 1, 1, tzinfo=timezone.utc)
    unreviewed = q.set_status(entry.id, "labelled", unsure(1.0))  # no reviewer: nobody vouches for these boxes
    assert (unreviewed.verified, unreviewed.reviewer, unreviewed.reviewed_at) == (False, None, None)
    q.close()


def test_only_verified_labelled_frames_are_labels_split_by_hash_or_toggle(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config(golden_fraction=0.0))
    ids = [q.offer(frame(i), unsure(), THRESHOLDS).entry.id for i in range(5)]  # type: ignore[union-attr]
    q.set_status(ids[0], "labelled", unsure(1.0), reviewer="tech")
    q.set_status(ids[1], "labelled", Detections.empty(CLASSES, (64, 64)), reviewer="tech")
    q.set_status(ids[2], "labelled", unsure(1.0))  # unverified
    q.set_status(ids[3], "rejected", reviewer="tech")
    assert [e.id for e in q.verified()] == ids[:2] and [e.id for e in q.verified("training")] == ids[:2]
    assert q.verified("golden") == []
    assert q.set_golden(ids[1], True).golden_manual
    assert [e.id for e in q.verified("golden")] == [ids[1]] and [e.id for e in q.verified("training")] == [ids[0]]
    assert q.set_golden(ids[1], None).golden is False  # back to the hash (fraction 0: training)
    with pytest.raises(QueueError, match="99"):
        q.set_golden(99, True)
    q.close()


def test_the_golden_fraction_comes_from_the_config(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config(golden_fraction=1.0))
    entry = q.offer(frame(1), unsure(), THRESHOLDS).entry
    assert entry is not None and entry.golden and not entry.golden_manual
    assert q.set_golden(entry.id, False).golden is False
    q.close()


def test_set_and_status_counts(tmp_path: Path) -> None:
    q = LearningQueue(tmp_path / "q", config(golden_fraction=0.0))
    ids = [q.offer(frame(i), unsure(), THRESHOLDS).entry.id for i in range(4)]  # type: ignore[union-attr]
    q.set_status(ids[0], "labelled", unsure(1.0), reviewer="tech")
    q.set_status(ids[1], "labelled", unsure(1.0))
    q.set_status(ids[2], "rejected", reviewer="tech")
    q.set_golden(ids[0], True)
    assert q.status_counts() == {"new": 1, "labelled": 2, "rejected": 1, "verified": 2, "unverified_labelled": 1}
    golden, training = q.set_counts("golden"), q.set_counts("training")
    assert (golden.frames, golden.boxes) == (1, {"scratch": 1, "hole": 0, "stain": 0})
    assert (training.frames, training.boxes) == (0, {"scratch": 0, "hole": 0, "stain": 0})
    q.close()


def test_record_reviews_is_all_or_nothing(queue: LearningQueue) -> None:
    entry = queue.offer(frame(1), unsure(), THRESHOLDS).entry
    assert entry is not None
    with pytest.raises(QueueError, match="no queue entry with id 77"):
        queue.record_reviews([ReviewRecord(entry.id, "rejected", None, "tech"), ReviewRecord(77, "rejected")])
    assert queue.get(entry.id).status == "new"
