"""Samplers pick frames worth a human look; quotas cap how many."""

from __future__ import annotations

import pytest

from agent.config import QueueConfig
from agent.detections import Detections
from agent.learn.samplers import (
    Candidate,
    FlaggedMissSampler,
    RandomSampler,
    RateQuota,
    ThresholdBandSampler,
    build_samplers,
    register_sampler,
)

CLASSES = ("scratch", "hole", "stain")
THRESHOLDS = {"scratch": 0.5, "hole": 0.6, "stain": 0.4}


def boxes(*scored: tuple[str, float]) -> Detections:
    labels = [label for label, _ in scored]
    return Detections.from_labels(labels, [[10, 10, 20, 20]] * len(labels), CLASSES, (64, 64),
                                  score=[score for _, score in scored])


@pytest.mark.parametrize(
    ("scored", "fires"),
    [
        ((("scratch", 0.62),), True),   # 0.12 above its 0.5 threshold
        ((("scratch", 0.38),), True),   # 0.12 below
        ((("scratch", 0.95),), False),  # confidently a defect
        ((("scratch", 0.10),), False),  # confidently nothing
        ((("hole", 0.70),), True),      # each class is compared with its own threshold
        ((("stain", 0.70),), False),
        ((), False),
    ],
)
def test_threshold_band_fires_near_the_class_threshold(scored: tuple[tuple[str, float], ...], fires: bool) -> None:
    reason = ThresholdBandSampler(band=0.15).reason(Candidate(boxes(*scored), THRESHOLDS))
    assert (reason is not None) == fires


def test_threshold_band_reason_names_the_closest_box() -> None:
    reason = ThresholdBandSampler(0.15).reason(Candidate(boxes(("scratch", 0.40), ("hole", 0.58)), THRESHOLDS))
    assert reason is not None and "hole" in reason and "0.580" in reason


def test_missing_threshold_names_the_class() -> None:
    with pytest.raises(KeyError, match="stain"):
        ThresholdBandSampler(0.1).reason(Candidate(boxes(("stain", 0.5)), {"scratch": 0.5}))


@pytest.mark.parametrize(
    ("scored", "flagged", "fires"),
    [
        ((), True, True),                    # line says bad, model saw nothing
        ((("hole", 0.3),), True, True),      # only a box below its threshold: still a miss
        ((("hole", 0.9),), True, False),     # model caught it
        ((), False, False),                  # nothing flagged
    ],
)
def test_flagged_miss_fires_when_a_flagged_part_would_pass(
    scored: tuple[tuple[str, float], ...], flagged: bool, fires: bool
) -> None:
    reason = FlaggedMissSampler().reason(Candidate(boxes(*scored), THRESHOLDS, flagged=flagged))
    assert (reason is not None) == fires


@pytest.mark.parametrize(("verdict", "fires"), [("pass", True), ("uncertain", True), ("fail", False)])
def test_with_the_verdict_known_a_flagged_part_the_box_did_not_fail_is_a_miss(verdict: str, fires: bool) -> None:
    candidate = Candidate(boxes(("hole", 0.55)), THRESHOLDS, flagged=True, flag_reason="leak test", verdict=verdict)
    reason = FlaggedMissSampler().reason(candidate)
    assert (reason is not None) == fires
    said = f"flagged-miss: the line flagged this part as bad (leak test) but the box said {verdict}"
    assert reason is None or reason == said


def test_random_sampler_keeps_about_its_rate() -> None:
    sampler = RandomSampler(rate=0.2, seed=7)
    kept = sum(sampler.reason(Candidate(boxes(), THRESHOLDS)) is not None for _ in range(5000))
    assert 800 < kept < 1200
    assert RandomSampler(rate=0.0).reason(Candidate(boxes(), THRESHOLDS)) is None


def test_build_samplers_follows_the_config_and_rejects_unknown_names() -> None:
    built = build_samplers(QueueConfig(samplers=["flagged-miss", "threshold-band"], band=0.2))
    assert [s.name for s in built] == ["flagged-miss", "threshold-band"]
    assert built[1].band == 0.2  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="nope"):
        build_samplers(QueueConfig(), names=["nope"])


def test_custom_samplers_can_be_registered() -> None:
    class EveryFrame:
        name = "every-frame"

        def reason(self, candidate: Candidate) -> str | None:
            return "every frame"

    register_sampler("every-frame", lambda cfg: EveryFrame())
    assert build_samplers(QueueConfig(), names=["every-frame"])[0].reason(Candidate(boxes(), THRESHOLDS))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_quota_caps_each_window_and_recovers_when_it_slides() -> None:
    clock = Clock()
    quota = RateQuota(per_minute=2, per_hour=3, per_day=100, clock=clock)
    for _ in range(2):
        assert quota.exceeded() is None
        quota.record()
    assert quota.exceeded() == "per-minute quota of 2 reached"
    clock.now += 61
    quota.record()
    assert quota.exceeded() == "per-hour quota of 3 reached"
    clock.now += 3600
    assert quota.exceeded() is None


def test_quota_of_zero_admits_nothing_and_seeding_counts_earlier_entries() -> None:
    clock = Clock()
    assert RateQuota(0, 10, 10, clock=clock).exceeded() == "per-minute quota of 0 reached"
    quota = RateQuota(10, 10, 2, clock=clock)
    quota.seed([clock.now - 7200, clock.now - 60_000, clock.now - 90_000])  # the last is over a day old
    assert quota.exceeded() == "per-day quota of 2 reached"
