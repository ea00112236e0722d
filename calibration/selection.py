"""Which frames of a pool a technician should label, given a label budget: the active-learning strategies the
experiment `bench/active_learning.py` compares.

Every strategy sees the same pool (frames with the serving model's unfiltered, calibrated predictions) and returns
at most `budget` distinct pool positions, deterministically for a seed:

- `threshold-band`: the daemon's own choice. A frame qualifies when the daemon's `ThresholdBandSampler` would queue
  it; qualifying frames come in the station's review order (smallest margin first, `agent.learn.uncertainty`), and a
  frame the queue's near-duplicate check (`agent.learn.dedup`) would refuse is skipped. When the band holds fewer
  frames than the budget, the rest are the most unsure frames outside it (a technician reviewing on down the list).
- `random`: a uniform sample, the unbiased baseline.
- `diverse-band`: uncertainty plus diversity. The `threshold-band` order gives a shortlist `SHORTLIST_FACTOR` times
  the budget; k-center greedy on cheap image features then picks frames far apart, starting from the most unsure
  one, so a budget is not spent on many frames of the same look.
- `varied-band`: the daemon's other review order (`queue.review_order: unsure-varied`,
  `agent.learn.uncertainty.unsure_and_varied_first`): the `threshold-band` order, re-ordered so each next frame is
  the one least like those before it (frame hash) among the most unsure ones not yet taken.
- `band-mass`: the band frames with the most doubt in total first: the sum over a frame's boxes of how far inside
  the band each lies (`band - margin`), so a frame with several unsure boxes (several labels for one review) comes
  before a frame with one; then as `threshold-band`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from agent.learn.dedup import RecentEntries, RecentEntry, dhash
from agent.learn.samplers import Candidate, ThresholdBandSampler
from agent.learn.uncertainty import detections_box_margins, detections_margin, varied_order

STRATEGIES: tuple[str, ...] = ("threshold-band", "random", "diverse-band", "band-mass", "varied-band")
SHORTLIST_FACTOR = 3
_CAMERA = "pool"  # one camera: the dedup check compares every pool frame with every earlier pick
_THUMBNAIL = 8
_NO_FEATURES = np.zeros((0, 3 * _THUMBNAIL * _THUMBNAIL), dtype=np.float32)


@dataclass(frozen=True)
class PoolFrame:
    """One unlabelled frame of the pool: its pixels and what the serving model predicted on it."""

    image: npt.NDArray[np.uint8]
    detections: Detections


@dataclass(frozen=True)
class SelectionSettings:
    """The daemon's queue settings the band strategies follow (`queue.band`, `queue.dedup_max_distance`)."""

    thresholds: Mapping[str, float]
    band: float = 0.15
    dedup_max_distance: int = 6


def select_frames(strategy: str, pool: Sequence[PoolFrame], budget: int, seed: int,
                  settings: SelectionSettings) -> list[int]:
    """Up to `budget` distinct positions in `pool` to label, in the order the strategy chose them."""
    if strategy not in _SELECTORS:
        raise ValueError(f"unknown strategy {strategy!r}; known strategies: {list(STRATEGIES)}")
    if budget < 0:
        raise ValueError(f"budget={budget}: must be >= 0")
    return _SELECTORS[strategy](pool, budget, seed, settings)


def select_random(pool: Sequence[PoolFrame], budget: int, seed: int, settings: SelectionSettings) -> list[int]:
    order = np.random.default_rng(seed).permutation(len(pool))
    return [int(i) for i in order[:budget]]


def select_band(pool: Sequence[PoolFrame], budget: int, seed: int, settings: SelectionSettings) -> list[int]:
    return review_order(pool, seed, settings, limit=budget)


def select_diverse_band(pool: Sequence[PoolFrame], budget: int, seed: int, settings: SelectionSettings
                        ) -> list[int]:
    shortlist = review_order(pool, seed, settings, limit=budget * SHORTLIST_FACTOR)
    features = np.stack([image_features(pool[i].image) for i in shortlist]) if shortlist else _NO_FEATURES
    return [shortlist[i] for i in k_center_greedy(features, budget)]


def select_band_mass(pool: Sequence[PoolFrame], budget: int, seed: int, settings: SelectionSettings) -> list[int]:
    return review_order(pool, seed, settings, limit=budget, by_mass=True)


def select_varied_band(pool: Sequence[PoolFrame], budget: int, seed: int, settings: SelectionSettings
                       ) -> list[int]:
    queued = review_order(pool, seed, settings, limit=len(pool))  # what the band would queue, most unsure first
    return [queued[i] for i in varied_order([dhash(pool[i].image) for i in queued], budget)]


def band_mass(detections: Detections, thresholds: Mapping[str, float], band: float) -> float:
    """How much doubt a frame holds: the sum over its boxes inside the band of `band - |score - threshold|`."""
    return float(np.clip(band - detections_box_margins(detections, thresholds), 0.0, None).sum())


def review_order(pool: Sequence[PoolFrame], seed: int, settings: SelectionSettings, limit: int,
                 by_mass: bool = False) -> list[int]:
    """Up to `limit` positions: band frames most unsure first (`by_mass`: most doubt in total first), then the rest
    most unsure first; near-duplicates of an earlier pick skipped as the queue would. Ties are broken by a seeded
    shuffle, so seeds differ only there."""
    sampler = ThresholdBandSampler(settings.band)
    tie_break = np.random.default_rng(seed).permutation(len(pool))

    def rank(i: int) -> tuple[bool, float, float, int]:
        frame = pool[i]
        in_band = sampler.reason(Candidate(frame.detections, settings.thresholds)) is not None
        mass = band_mass(frame.detections, settings.thresholds, settings.band) if by_mass else 0.0
        return not in_band, -mass, detections_margin(frame.detections, settings.thresholds), int(tie_break[i])

    picked: list[int] = []
    recent = RecentEntries()
    for i in sorted(range(len(pool)), key=rank):
        if len(picked) >= limit:
            break
        image_hash = dhash(pool[i].image)
        if recent.duplicate_of(_CAMERA, image_hash, pool[i].detections, settings.dedup_max_distance) is None:
            picked.append(i)
            recent.add(RecentEntry(i, _CAMERA, image_hash, pool[i].detections))
    return picked


def image_features(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """A cheap description of a frame's look: an 8x8 colour thumbnail scaled to 0..1 (lighting, surface, blobs)."""
    small = cv2.resize(image, (_THUMBNAIL, _THUMBNAIL), interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.float32).reshape(-1) / 255.0


def k_center_greedy(features: npt.NDArray[np.float32], count: int) -> list[int]:
    """Row 0 first, then again and again the row farthest from every row picked so far (distinct rows only)."""
    if count <= 0 or len(features) == 0:
        return []
    picked = [0]
    nearest = np.linalg.norm(features - features[0], axis=1)
    while len(picked) < min(count, len(features)):
        nearest[picked] = -1.0  # never pick a row twice, even among identical frames
        farthest = int(np.argmax(nearest))
        picked.append(farthest)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[farthest], axis=1))
    return picked


_SELECTORS: dict[str, Callable[[Sequence[PoolFrame], int, int, SelectionSettings], list[int]]] = {
    "threshold-band": select_band, "random": select_random, "diverse-band": select_diverse_band,
    "band-mass": select_band_mass, "varied-band": select_varied_band,
}
