"""Samplers decide which inspected frames are worth a human look (and later a fine-tuning step).

A sampler sees one inspected frame (`Candidate`) and returns a short reason when the frame should be queued, or
None. They are pluggable: `register_sampler(name, factory)` adds one, `build_samplers(config)` instantiates the
ones a `QueueConfig.samplers` list names. Built in:

- `threshold-band`: some box scores within `band` of its class threshold (the model was unsure either way).
  It only fires for boxes below the threshold if the detector reports them; pass the unfiltered detections.
- `flagged-miss`: the line flagged the part as bad (a trigger with `expect: "fail"`/`"defect"`, or `cmd/flag` after
  its result) but the verdict was `pass` or `uncertain` (without a verdict: no box reached its threshold), i.e. the
  model passed, or was unsure about, a bad part.
- `random`: a share `random_rate` of all frames, to keep an unbiased sample of normal production.

Quotas (`RateQuota`) cap how many frames per minute/hour/day are queued, whatever the samplers say.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agent.detections import Detections


@dataclass(frozen=True)
class Candidate:
    """What a sampler looks at: the predictions on one frame, the thresholds in force, and the line's flag."""

    detections: Detections
    thresholds: Mapping[str, float]
    flagged: bool = False
    flag_reason: str | None = None  # the line's why, when it gave one (`cmd/flag`)
    verdict: str | None = None  # the daemon's verdict on the frame, when known (pass / fail / uncertain)

    def threshold(self, label: str) -> float:
        try:
            return self.thresholds[label]
        except KeyError:
            raise KeyError(f"no threshold for class {label!r}; thresholds cover {sorted(self.thresholds)}") from None


class Sampler(Protocol):
    name: str

    def reason(self, candidate: Candidate) -> str | None:
        """Why this frame should be queued, or None to pass it by."""


class ThresholdBandSampler:
    name = "threshold-band"

    def __init__(self, band: float) -> None:
        if not 0.0 <= band <= 1.0:
            raise ValueError(f"band={band}: must be between 0 and 1")
        self.band = band

    def reason(self, candidate: Candidate) -> str | None:
        closest: tuple[float, str, float, float] | None = None
        for box in candidate.detections:
            threshold = candidate.threshold(box.label)
            distance = abs(box.score - threshold)
            if distance <= self.band and (closest is None or distance < closest[0]):
                closest = (distance, box.label, box.score, threshold)
        if closest is None:
            return None
        _, label, score, threshold = closest
        return f"{self.name}: {label} scored {score:.3f} against threshold {threshold:.3f}"


class FlaggedMissSampler:
    name = "flagged-miss"

    def reason(self, candidate: Candidate) -> str | None:
        """A flagged part the box did not fail: its verdict was pass or uncertain (without a verdict: no box reached
        its threshold)."""
        if not candidate.flagged:
            return None
        if candidate.verdict is not None:
            if candidate.verdict == "fail":
                return None
            said = f"the box said {candidate.verdict}"
        elif any(box.score >= candidate.threshold(box.label) for box in candidate.detections):
            return None
        else:
            said = "no defect reached its threshold"
        why = f" ({candidate.flag_reason})" if candidate.flag_reason else ""
        return f"{self.name}: the line flagged this part as bad{why} but {said}"


class RandomSampler:
    name = "random"

    def __init__(self, rate: float, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"random_rate={rate}: must be between 0 and 1")
        self.rate = rate
        self._rng = random.Random(seed)

    def reason(self, candidate: Candidate) -> str | None:
        if self.rate > 0 and self._rng.random() < self.rate:
            return f"{self.name}: sampled at rate {self.rate:g}"
        return None


SamplerFactory = Callable[[Any], Sampler]
_REGISTRY: dict[str, SamplerFactory] = {
    "threshold-band": lambda cfg: ThresholdBandSampler(cfg.band),
    "flagged-miss": lambda cfg: FlaggedMissSampler(),
    "random": lambda cfg: RandomSampler(cfg.random_rate),
}


def register_sampler(name: str, factory: SamplerFactory) -> None:
    """Make a sampler available under `name`; `factory(queue_config)` builds it."""
    _REGISTRY[name] = factory


def build_samplers(queue_config: Any, names: Iterable[str] | None = None) -> list[Sampler]:
    """The samplers named in `queue_config.samplers` (or `names`); an unknown name raises ValueError naming it."""
    wanted = list(queue_config.samplers if names is None else names)
    unknown = [name for name in wanted if name not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown sampler {unknown[0]!r}; known samplers: {sorted(_REGISTRY)}")
    return [_REGISTRY[name](queue_config) for name in wanted]


class RateQuota:
    """Sliding-window caps per minute, hour and day. `clock` is injectable (seconds, e.g. `time.time`)."""

    WINDOWS = (("minute", 60.0), ("hour", 3600.0), ("day", 86400.0))

    def __init__(self, per_minute: int, per_hour: int, per_day: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.limits = {"minute": per_minute, "hour": per_hour, "day": per_day}
        for window, limit in self.limits.items():
            if limit < 0:
                raise ValueError(f"per_{window}={limit}: must be >= 0")
        self._clock = clock
        self._stamps: deque[float] = deque()
        self._lock = threading.Lock()

    def seed(self, stamps: Iterable[float]) -> None:
        """Count earlier admissions (e.g. from the queue's index after a restart)."""
        with self._lock:
            self._stamps.extend(sorted(stamps))
            self._expire(self._clock())

    def exceeded(self) -> str | None:
        """The first window whose quota is used up ("per-minute quota of 10 reached"), or None."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            for window, seconds in self.WINDOWS:
                used = sum(1 for stamp in self._stamps if stamp > now - seconds)
                if used >= self.limits[window]:
                    return f"per-{window} quota of {self.limits[window]} reached"
            return None

    def set_limits(self, per_minute: int, per_hour: int, per_day: int) -> None:
        """New caps (a reload); the admissions already counted stay counted."""
        with self._lock:
            self.limits = {"minute": per_minute, "hour": per_hour, "day": per_day}

    def record(self) -> None:
        with self._lock:
            self._stamps.append(self._clock())

    def _expire(self, now: float) -> None:
        while self._stamps and self._stamps[0] <= now - 86400.0:
            self._stamps.popleft()
