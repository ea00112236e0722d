"""The daemon's cameras: one capture worker each, started, restarted and retired while the daemon runs.

`CameraSet` is, for everyone else (the trigger handshake, readiness, `cmd/status`, the watchdog, the station), a
read-only mapping camera name -> `CaptureWorker`. A reload hands it what changed (`apply`, agent/reload.py): a removed
camera stops and reports `retired`, a changed one restarts alone (its frame ids, counters and trigger queue go on),
an added one starts; the other cameras are never touched, so they lose no frame. The mapping is replaced, never
changed in place: a reader iterating over it on another thread never sees it change under its feet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import structlog

from agent.capture.worker import CameraStatus, CaptureWorker, FrameQueue, StatusCallback
from agent.config import CameraConfig
from agent.handshake import Handshake
from agent.health.metrics import Metrics
from agent.reload import CameraChanges
from agent.station.backend import CameraInfo

log = structlog.get_logger("agent.cameras")
RETIRED_REASON = "removed from the config by a reload"
RESTART_REASON = "restarting: its config changed (reload)"


class CameraSet(Mapping[str, CaptureWorker]):
    """The running capture workers by camera name, in config order."""

    def __init__(self, frames: FrameQueue, on_status: StatusCallback, metrics: Metrics) -> None:
        self.frames = frames
        self.on_status = on_status
        self.metrics = metrics
        self._workers: dict[str, CaptureWorker] = {}
        self._stopped: dict[str, CaptureWorker] = {}  # each retired camera's last worker, for a camera added back
        self._handshake: Handshake | None = None

    def __getitem__(self, name: str) -> CaptureWorker:
        return self._workers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._workers)

    def __len__(self) -> int:
        return len(self._workers)

    def infos(self) -> dict[str, CameraInfo]:
        """What the station shows of each camera."""
        return {name: CameraInfo(w.status or "starting", w.reason, w.counters.snapshot())
                for name, w in self._workers.items()}

    def all_online(self) -> bool:
        return all(w.status == "online" for w in self._workers.values())

    def loops_alive(self, max_age_s: float) -> bool:
        """For the watchdog: every camera's capture loop went round within `max_age_s`."""
        return all(w.loop_alive(max_age_s) for w in self._workers.values())

    def start(self, cameras: Sequence[CameraConfig], handshake: Handshake) -> None:
        """Start a worker per camera (at daemon start)."""
        self._handshake = handshake
        self._workers = {cfg.name: self._started(cfg, None) for cfg in cameras}

    def apply(self, changes: CameraChanges, cameras: Sequence[CameraConfig]) -> None:
        """A reload's camera changes; `cameras` is the new list (for the order)."""
        leaving = [self._workers[name] for name in changes.removed]
        workers = {name: w for name, w in self._workers.items() if name not in changes.removed}
        self._workers = dict(workers)  # first, so a trigger for a removed camera is refused as unknown at once
        for worker in leaving:
            self._retire(worker)
        for cfg in changes.restarted:
            workers[cfg.name] = self._restarted(workers[cfg.name], cfg)
        for cfg in changes.added:
            workers[cfg.name] = self._started(cfg, self._stopped.pop(cfg.name, None))
        self._workers = {cfg.name: workers[cfg.name] for cfg in cameras}
        log.info("cameras changed", **changes.describe())

    def stop_all(self, timeout: float) -> None:
        for worker in self._workers.values():
            worker.stop(timeout=timeout)

    def _started(self, cfg: CameraConfig, previous: CaptureWorker | None) -> CaptureWorker:
        assert self._handshake is not None, "CameraSet.start first"
        worker = CaptureWorker(cfg, self.frames, on_status=self.on_status,
                               on_trigger_state=self._handshake.publish_state, previous=previous)
        self.metrics.watch_camera(cfg.name, counters_of(worker))
        worker.start()
        return worker

    def _restarted(self, old: CaptureWorker, cfg: CameraConfig) -> CaptureWorker:
        """Stop the camera's worker (a trigger meanwhile is refused as busy: the camera is not online), start anew."""
        self._stop(old, "offline", RESTART_REASON, keeps_triggers=cfg.mode == "trigger")
        return self._started(cfg, old)

    def _retire(self, worker: CaptureWorker) -> None:
        self._stop(worker, "retired", RETIRED_REASON, keeps_triggers=False)
        self._stopped[worker.name] = worker
        self.metrics.forget_camera(worker.name)

    def _stop(self, worker: CaptureWorker, status: CameraStatus, reason: str, keeps_triggers: bool) -> None:
        worker.stop(status=status, reason=reason)
        self.frames.remove_camera(worker.name)  # its frames already queued are still inspected
        if worker.triggers is not None and not keeps_triggers and self._handshake is not None:
            self._handshake.retire(worker.triggers)  # its parts in flight still get their one outcome


def counters_of(worker: CaptureWorker) -> Callable[[], dict[str, float]]:
    """What Prometheus reads of a camera at each scrape."""
    return lambda: {**worker.counters.snapshot(), "online": int(worker.status == "online")}
