"""Which frames each active-learning strategy asks a technician to label (`calibration.selection`)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detections import Detections
from calibration.selection import STRATEGIES, PoolFrame, SelectionSettings, k_center_greedy, select_frames

CLASSES = ("scratch", "hole", "stain")
SETTINGS = SelectionSettings(thresholds={name: 0.5 for name in CLASSES}, band=0.15, dedup_max_distance=6)


def boxes(*scores: float, x: int = 4) -> Detections:
    """One scratch box per score, each `x` pixels further right."""
    xyxy = np.array([[x + 10 * i, 4, x + 10 * i + 8, 12] for i in range(len(scores))], dtype=np.float32)
    return Detections(xyxy.reshape(-1, 4), np.zeros(len(scores), dtype=np.int64), np.array(scores, np.float32),
                      CLASSES, (64, 64))


def noise_frame(seed: int, level: int = 128) -> np.ndarray:
    """A frame of its own look: random structure (so its dHash differs) around a grey `level`."""
    rng = np.random.default_rng(seed)
    return np.clip(level + rng.normal(0, 40, size=(64, 64, 3)), 0, 255).astype(np.uint8)


def pool_of(scores: list[float], levels: list[int] | None = None) -> list[PoolFrame]:
    levels = levels or [128] * len(scores)
    return [PoolFrame(noise_frame(i, level), boxes(score)) for i, (score, level) in enumerate(zip(scores, levels))]


MIXED_POOL = pool_of([0.9, 0.45, 0.1, 0.62, 0.51, 0.3, 0.98, 0.4, 0.58, 0.05] * 6)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("budget", [0, 1, 7, 25, 60, 100])
def test_every_strategy_respects_the_budget_and_never_picks_a_frame_twice(strategy: str, budget: int) -> None:
    picked = select_frames(strategy, MIXED_POOL, budget, seed=3, settings=SETTINGS)
    assert len(picked) == min(budget, len(MIXED_POOL))
    assert len(set(picked)) == len(picked)
    assert all(0 <= i < len(MIXED_POOL) for i in picked)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_same_seed_gives_the_same_frames(strategy: str) -> None:
    first = select_frames(strategy, MIXED_POOL, 12, seed=7, settings=SETTINGS)
    assert select_frames(strategy, MIXED_POOL, 12, seed=7, settings=SETTINGS) == first


def test_random_is_reproducible_per_seed_and_differs_between_seeds() -> None:
    runs = [select_frames("random", MIXED_POOL, 20, seed=seed, settings=SETTINGS) for seed in (1, 1, 2)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_the_band_picks_the_frames_closest_to_their_threshold_first() -> None:
    pool = pool_of([0.9, 0.45, 0.1, 0.62, 0.51, 0.3, 0.98])  # margins .4 .05 .4 .12 .01 .2 .48
    assert select_frames("threshold-band", pool, 3, seed=0, settings=SETTINGS) == [4, 1, 3]


def test_band_mass_puts_a_frame_with_several_unsure_boxes_before_one_closer_to_its_threshold() -> None:
    # frame 0: one box at margin .01 (mass .14); frame 1: three boxes at margin .05 (mass 3 x .10); frame 2: outside
    pool = [PoolFrame(noise_frame(0), boxes(0.51)), PoolFrame(noise_frame(1), boxes(0.55, 0.45, 0.55)),
            PoolFrame(noise_frame(2), boxes(0.95))]
    assert select_frames("band-mass", pool, 3, seed=0, settings=SETTINGS) == [1, 0, 2]
    assert select_frames("threshold-band", pool, 3, seed=0, settings=SETTINGS) == [0, 1, 2]


def test_the_band_comes_before_frames_outside_it_and_then_the_most_unsure_of_the_rest() -> None:
    pool = pool_of([0.95, 0.2, 0.55, 0.9])  # only 0.55 is in the band; then margins .3 (0.2), .4 (0.9), .45 (0.95)
    assert select_frames("threshold-band", pool, 4, seed=0, settings=SETTINGS) == [2, 1, 3, 0]


def test_the_band_skips_a_near_duplicate_of_a_frame_it_already_picked() -> None:
    image = noise_frame(1)
    pool = [PoolFrame(image, boxes(0.5)), PoolFrame(image.copy(), boxes(0.52)), PoolFrame(noise_frame(2), boxes(0.6))]
    assert select_frames("threshold-band", pool, 2, seed=0, settings=SETTINGS) == [0, 2]


def test_the_same_view_with_other_predictions_is_not_a_duplicate() -> None:
    image = noise_frame(1)
    pool = [PoolFrame(image, boxes(0.5)), PoolFrame(image.copy(), boxes(0.52, x=40))]
    assert select_frames("threshold-band", pool, 2, seed=0, settings=SETTINGS) == [0, 1]


def test_diversity_spreads_the_budget_over_different_looks() -> None:
    # the three most unsure frames are all dark; the shortlist also holds a mid-grey and a bright one
    scores = [0.50, 0.505, 0.51, 0.53, 0.56, 0.58]
    levels = [40, 40, 40, 40, 128, 220]
    pool = pool_of(scores, levels)
    band = select_frames("threshold-band", pool, 3, seed=0, settings=SETTINGS)
    diverse = select_frames("diverse-band", pool, 3, seed=0, settings=SETTINGS)
    assert band == [0, 1, 2]
    assert diverse[0] == 0  # still starts from the most unsure frame
    assert sorted(levels[i] for i in diverse) == [40, 128, 220]


def test_k_center_greedy_takes_the_farthest_point_each_time() -> None:
    points = np.array([[0.0], [0.1], [10.0], [5.0], [9.9]], dtype=np.float32)
    assert k_center_greedy(points, 3) == [0, 2, 3]


def test_k_center_greedy_never_repeats_identical_points() -> None:
    assert sorted(k_center_greedy(np.zeros((4, 2), dtype=np.float32), 4)) == [0, 1, 2, 3]


def test_an_unknown_strategy_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'newest'"):
        select_frames("newest", MIXED_POOL, 5, seed=0, settings=SETTINGS)


def test_varied_band_is_the_stations_varied_order_over_what_the_band_would_queue() -> None:
    band = select_frames("threshold-band", MIXED_POOL, len(MIXED_POOL), seed=0, settings=SETTINGS)
    varied = select_frames("varied-band", MIXED_POOL, 10, seed=0, settings=SETTINGS)
    assert varied[0] == band[0]  # the most unsure frame first
    assert set(varied) <= set(band[:4 * 10])  # never past the shortlist: 3 x (picks + 1) most unsure
    assert varied != band[:10]  # and not simply the band's order: the frames' looks spread the picks
