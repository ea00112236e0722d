"""Near-duplicate suppression: dHash, box matching, and the window of recent entries."""

from __future__ import annotations

import numpy as np

from agent.detections import Detections
from agent.learn.dedup import RECENT_ENTRIES, RecentEntries, RecentEntry, dhash, hamming, same_predictions
from tests.agent.learn.helpers import CLASSES, GEN, unsure


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


def test_recent_entries_name_the_newest_match_from_the_same_camera_only() -> None:
    image_hash = dhash(GEN.frame(0).image)
    recent = RecentEntries([RecentEntry(1, "cam0", image_hash, unsure()), RecentEntry(2, "cam0", image_hash ^ 1,
                                                                                     unsure())])
    assert recent.duplicate_of("cam0", image_hash, unsure(), 6) == "near-duplicate of entry 2 (hash distance 1)"
    assert recent.duplicate_of("cam0", image_hash, unsure(), 0) == "near-duplicate of entry 1 (hash distance 0)"
    assert recent.duplicate_of("cam1", image_hash, unsure(), 64) is None
    assert recent.duplicate_of("cam0", image_hash, unsure(box=(40, 40, 60, 60)), 64) is None


def test_forgotten_entries_no_longer_match_and_the_window_is_bounded() -> None:
    recent = RecentEntries([RecentEntry(i, "cam0", i, unsure()) for i in range(RECENT_ENTRIES + 10)])
    assert recent.duplicate_of("cam0", 5, unsure(), 0) is None  # pushed out of the window
    snapshot = recent.snapshot()
    recent.forget(range(RECENT_ENTRIES + 10))
    assert recent.duplicate_of("cam0", 20, unsure(), 0) is None
    assert snapshot.duplicate_of("cam0", 20, unsure(), 0) == "near-duplicate of entry 20 (hash distance 0)"
