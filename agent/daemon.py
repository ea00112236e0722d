"""The daemon: capture workers -> batcher -> detector -> decide -> outbox/MQTT + learning queue.

The loop is a sequence of named steps: the inference thread runs `collect_batch` and `inspect`, then hands each
inspected batch to the results stage (its own thread), which runs `publish_results`, `sample_for_learning` and
`report_health`. Capture, MQTT and commands run on their own threads too, so a slow detector never blocks capture
(frames are dropped and counted instead), a dead broker never blocks inference (results wait in the SQLite outbox),
and inference never waits for an outbox fsync (the results stage does, at most `RESULTS_PENDING` batches behind).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from agent.cameras import CameraSet
from agent.capture.worker import CameraState, Frame, FrameQueue
from agent.config import Settings, load_settings
from agent.daemon_commands import DaemonCommands
from agent.decide import Thresholds
from agent.detector.base import Detector, FrameError
from agent.detector.tasks import GROUNDING, Region, run_task_on
from agent.flags import FlagDesk, RecentParts
from agent.geometry import CameraGeometries, geometries_from_settings
from agent.handshake import Handshake
from agent.health.metrics import Metrics
from agent.health.notify import Notifier, Watchdog
from agent.inspected import Inspected
from agent.learn.queue import LearningQueue
from agent.model_choice import DetectorFactory, ModelChoice, choose_model, detector_from_settings, thresholds_for
from agent.opcua.hosting import DaemonParts, OpcUaHost, start_opcua
from agent.pictures import keeper_from_settings
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import OutboxError, OutboxFull, open_outbox
from agent.reload import ReloadPlan, Scope, plan_reload
from agent.sparkplug.hosting import start_sparkplug
from agent.sparkplug.node import EdgeNode
from agent.stage import Stage
from agent.statedir import StateDir
from agent.station.backend import CallbackBackend
from agent.station.link import StationLink
from agent.station.live import LiveBoard

log = structlog.get_logger("agent.daemon")

BATCH_POLL_S = 0.2  # how long the inference loop waits for a first frame before checking for stop/reload
LOOP_MAX_AGE_S = 30.0  # a loop that has not gone round for this long is reported dead to the watchdog
RESULTS_PENDING = 2  # inspected batches waiting for the results stage before inference waits for it
SHUTDOWN_WAITS_FOR_RELOAD_S = 30.0  # a reload under way (a model loading) finishes before the cameras stop


class Daemon(DaemonCommands):
    """Owns every long-lived part; `run()` blocks until SIGTERM/SIGINT (or `stop()`), then drains and returns."""

    def __init__(self, settings: Settings, config_path: Path | None = None,
                 detector_factory: DetectorFactory = detector_from_settings) -> None:
        self.settings = settings
        self.config_path = config_path
        self.detector_factory = detector_factory
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.watchdog = Watchdog(self.notifier)
        self.frames = FrameQueue()
        self.workers = CameraSet(self.frames, self.on_camera_status, self.metrics)
        self.parts = RecentParts(settings.queue.flag_parts, settings.queue.flag_frames_bytes)  # for cmd/flag
        self.geometries = CameraGeometries({})  # each camera's pixel -> mm, read at start and on every reload
        self._swap_lock = threading.Lock()
        self._reload_lock = threading.Lock()  # one reload at a time (cmd/reload, SIGHUP, the station, OPC UA)
        self.inference_beat = self.watchdog.register("inference", max_age_s=LOOP_MAX_AGE_S)
        self.board = LiveBoard(recent=settings.station.recent_frames)  # what the station's live page shows
        self.pictures = keeper_from_settings(settings.pictures, settings.state_dir, settings.station.enabled)
        self.station_link: StationLink | None = None
        self.opcua: OpcUaHost | None = None  # the OPC UA server, when enabled
        self.sparkplug: EdgeNode | None = None  # the Sparkplug B edge node, when enabled
        self.results: Stage[list[Inspected]] = Stage(
            "results", self.finish_batch, RESULTS_PENDING, self.watchdog.register("results", LOOP_MAX_AGE_S))

    # ----- start-up --------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model and the stores, connect, start cameras; READY=1 only once all of that worked."""
        state = StateDir(self.settings.state_dir).create()
        self.choice = choose_model(self.settings)
        self.detector = self.detector_factory(self.settings, self.choice)
        self.thresholds = thresholds_for(self.settings, self.choice)
        self.geometries = geometries_from_settings(self.settings)  # each camera's pixel -> mm (sizes, size rules)
        self.outbox = open_outbox(state.outbox, self.settings.outbox)
        self.queue = LearningQueue(state.queue, self.settings.queue)
        self.publisher = MqttPublisher(self.settings, self.outbox, self.detector.version,
                                       on_command=self._submit_command)
        self.handshake = Handshake(self.workers, self.publisher)  # trigger replies, parts in flight, result_ready
        self.publisher.on_delivered = self.handshake.delivered
        self.flags = FlagDesk(self.parts, self.queue, lambda: set(self.workers), self.handshake.in_flight)
        self.router = self._build_router()
        self.publisher.start()
        self.results.start()
        self.router.start()
        self.opcua = start_opcua(self._opcua_parts())
        self.sparkplug = start_sparkplug(self.settings, self.outbox, self.handshake.trigger, self.watchdog)
        self.workers.start(self.settings.cameras, self.handshake)
        self._start_health()
        self._start_station()
        log.info("daemon ready", model=self.detector.version, model_source=self.choice.source,
                 cameras=list(self.workers), state_dir=str(state.root))
        self.notifier.ready(status=f"inspecting with {self.detector.version}")

    def _opcua_parts(self) -> DaemonParts:
        s = self.settings
        return DaemonParts(s.opcua, s.device_id, {c.name: c.mode for c in s.cameras}, s.state_dir,
                           lambda: self.settings.model.adapter, self.handshake, self.reload_model,
                           self.detector.version)

    def _submit_command(self, message: Any) -> None:
        self.router.submit_mqtt(message)

    def _start_health(self) -> None:
        if self.settings.metrics.enabled:
            port = self.metrics.serve(self.settings.metrics.host, self.settings.metrics.port)
            log.info("metrics endpoint up", host=self.settings.metrics.host, port=port)
        self.watchdog.register_probe("capture", lambda: self.workers.loops_alive(LOOP_MAX_AGE_S))
        self.watchdog.register_probe("mqtt", lambda: self.publisher.alive(LOOP_MAX_AGE_S))
        self.watchdog.start()

    def _start_station(self) -> None:
        state = StateDir(self.settings.state_dir)
        backend = CallbackBackend(
            self.readiness, self.workers.infos, lambda: self.detector.version,
            config_path_of=lambda: self.config_path,
            runs_dir_of=lambda: self.settings.recalibration.work_dir or state.recalibration,  # where runs write
            models_dir_of=lambda: state.models, reload_model_of=self.reload_model,
            ground_of=self.ground)
        self.station_link = StationLink(self.settings.state_dir, backend, self.board, self.queue,
                                        lambda entry: self.publisher.publish_event("audit", **entry))
        self.station_link.start(self.settings.station, self.pictures.store)
        self.pictures.base_url = self.station_link.base_url()  # pictures only where a running station serves them

    def reload_model(self) -> str:
        """The station's promote/rollback: serve the model store's current adapter now; returns the served version."""
        self.reload(scope="model")
        return str(self.detector.version)

    def ground(self, frame: Any, phrase: str) -> list[Region]:
        """The station's "find the ...": phrase grounding with the serving model, on the caller's thread (the
        station's grounding worker); only taking the detector waits for the swap lock, never the decode."""
        with self._swap_lock:
            detector = self.detector
        return run_task_on(detector, [frame], GROUNDING, phrase)[0]

    def readiness(self) -> dict[str, bool]:
        """/readyz: a model is loaded, MQTT is connected, every camera is online."""
        return {"model": self.detector is not None, "mqtt": self.publisher.connected,
                "cameras": self.workers.all_online()}

    def on_camera_status(self, state: CameraState) -> None:
        log.info("camera status", camera=state.camera, status=state.status, reason=state.reason)
        self.publisher.publish_camera_status(state.camera, state.status, reason=state.reason, **state.counters)
        if self.sparkplug is not None:
            self.sparkplug.camera_status(state.camera, state.status)

    # ----- the loop ---------------------------------------------------------------------------------------------------
    def run(self) -> None:
        self._install_signal_handlers()
        self.start()
        try:
            while not self.stop_event.is_set():
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    threading.Thread(target=self._reload_quietly, name="reload", daemon=True).start()
                self.step()
        finally:
            self.shutdown()

    def step(self) -> int:
        """One pass of the pipeline: returns how many frames were inspected."""
        self.inference_beat.beat()
        self.handshake.tick()
        batch = self.collect_batch()
        if not batch:
            return 0
        self.results.put(self.inspect(batch))
        return len(batch)

    def finish_batch(self, items: list[Inspected]) -> None:
        """The results stage: store and publish the batch's results, offer its frames for learning, update gauges."""
        for item in items:
            self.parts.note(item)  # before its result goes out, so a flag sent on the result finds the part
        seqs = self.publish_results(items, [self.pictures.keep(i.decision, i.frame.image) for i in items])
        if self.opcua is not None:
            self.opcua.results(items, seqs)
        if self.sparkplug is not None:
            self.sparkplug.wake()
        for item in items:
            self.sample_for_learning(item)
            self.show_live(item)
        self.report_health()

    def collect_batch(self) -> list[Frame]:
        b = self.settings.batch
        return self.frames.get_batch(b.max_frames, timeout=BATCH_POLL_S, window_s=b.max_wait_ms / 1000.0)

    def inspect(self, batch: list[Frame]) -> list[Inspected]:
        """Detector over the batch; a frame the detector refuses is logged and skipped, the rest go on."""
        with self._swap_lock:
            detector, thresholds = self.detector, self.thresholds
        t0 = time.perf_counter()
        try:
            results = detector.detect([f.image for f in batch])
        except FrameError as exc:  # one bad frame must not cost the whole batch
            log.warning("frame refused by detector; inspecting the batch one by one", error=str(exc))
            return [item for f in batch for item in self._inspect_alone(detector, thresholds, f)]
        seconds = time.perf_counter() - t0
        self.metrics.observe_batch(seconds, len(batch))
        latency_ms = seconds * 1e3 / len(batch)
        return [Inspected.judge(f, d, thresholds, self.geometries.for_frame(f.camera, d.image_size), latency_ms,
                                detector.version) for f, d in zip(batch, results, strict=True)]

    def _inspect_alone(self, detector: Detector, thresholds: Thresholds, frame: Frame) -> list[Inspected]:
        t0 = time.perf_counter()
        try:
            (dets,) = detector.detect([frame.image])
        except FrameError as exc:
            log.warning("frame skipped", camera=frame.camera, frame_id=frame.frame_id, error=str(exc))
            self.handshake.skipped(frame, str(exc))
            self.metrics.pipeline_dropped.labels(camera=frame.camera).inc()
            return []
        latency_ms = (time.perf_counter() - t0) * 1e3
        geometry = self.geometries.for_frame(frame.camera, dets.image_size)
        return [Inspected.judge(frame, dets, thresholds, geometry, latency_ms, detector.version)]

    def publish_results(self, items: list[Inspected], urls: list[str | None]) -> list[int | None]:
        """Store the batch's results (`urls`: their pictures) in the outbox in one transaction, then MQTT delivers them;
        returns each one's seq, None for a result that could not be stored (logged; the outbox alarm tells the line)."""
        entries = [(self.publisher.topics.result(item.frame.camera), item.result_payload(self.settings.device_id, url))
                   for item, url in zip(items, urls, strict=True)]
        with self.handshake.recording():
            stored = self.outbox.append_many(entries)
            self.handshake.stored([(i.frame, i.decision.verdict, o[0] if isinstance(o, tuple) else None)
                                   for i, o in zip(items, stored, strict=True)])
        seqs: list[int | None] = []
        for item, outcome in zip(items, stored, strict=True):
            f = item.frame
            if isinstance(outcome, OutboxError):
                reason = "outbox full" if isinstance(outcome, OutboxFull) else "outbox error"
                log.error(f"result not stored: {reason}", camera=f.camera, frame_id=f.frame_id, error=str(outcome))
                seqs.append(None)
                continue
            self.metrics.results.labels(camera=f.camera, verdict=item.decision.verdict).inc()
            log.debug("result", camera=f.camera, seq=outcome[0], msg_id=outcome[1], verdict=item.decision.verdict)
            seqs.append(outcome[0])
        if any(seq is not None for seq in seqs):
            self.publisher.wake()
        return seqs

    def sample_for_learning(self, item: Inspected) -> None:
        limits = item.thresholds.for_classes(item.detections.class_names)
        evicted_before = self.queue.stats["evicted"]
        offered = self.queue.offer(item.frame, item.detections, limits, model=item.model, verdict=item.decision.verdict)
        if offered.entry is not None:
            log.info("frame queued for learning", camera=item.frame.camera, entry=offered.entry.id)
            self.parts.queued(item, offered.entry.id)
        if self.queue.stats["evicted"] > evicted_before:  # the disk budget is full: reviewers are falling behind
            self.publisher.publish_event("queue_alarm", reason="disk budget full, oldest entries evicted",
                                         evicted=self.queue.stats["evicted"], depth=self.queue.depth(),
                                         bytes=self.queue.total_bytes(), max_bytes=self.settings.queue.max_bytes)

    def show_live(self, item: Inspected) -> None:
        """Hand the frame to the station's live board (reference swap only; encoding happens when a browser asks)."""
        f = item.frame
        self.board.update(f.camera, f.image, item.detections, item.decision.verdict, f.frame_id, f.captured_at)

    def report_health(self) -> None:
        self.metrics.report_stores(self.outbox.depth(), self.outbox.size_bytes(), self.queue.depth(),
                                   self.queue.total_bytes(), self.publisher.connected)

    # ----- reload and commands ----------------------------------------------------------------------------------------
    def reload(self, scope: Scope = "all") -> dict[str, Any]:
        """Apply what can change live (agent/reload.py): the model and the store's current adapter, cameras, batching,
        the learning queue, the station and pictures. The config is checked whole, the model loaded and the station
        moved first: when any of that fails nothing is applied and the running config stays. Returns what changed,
        including the keys that wait for a restart. The MQTT session is never touched."""
        with self._reload_lock:
            self.notifier.reloading()
            try:
                loaded = load_settings(self.config_path) if self.config_path and scope != "model" else None
                plan = plan_reload(self.settings, loaded, scope)
                choice, detector = self._load_model(plan)
                geometries = geometries_from_settings(plan.settings, self.geometries)  # recalibrated cameras
                self._move_station(plan)
            except Exception as exc:
                log.error("reload failed; the running config and model stay", error=str(exc))
                self.publisher.publish_event("reload_failed", error=str(exc), model=self.detector.version)
                self.notifier.ready(status=f"reload failed; inspecting with {self.detector.version}")
                raise
            previous = self._apply(plan, choice, detector, geometries)
        summary = plan.summary(detector.version)
        log.info("reloaded", previous=previous, **summary)
        if plan.restart_required:
            log.warning("config changes need a restart", restart_required=plan.restart_required)
        self.publisher.publish_event("model_changed", previous=previous, **summary)
        self.notifier.ready(status=f"inspecting with {detector.version}")
        return summary

    def _apply(self, plan: ReloadPlan, choice: ModelChoice, detector: Detector, geometries: CameraGeometries) -> str:
        """Swap in what the plan changes (nothing here can fail); returns the model version served before."""
        with self._swap_lock:
            previous, self.detector, self.choice = self.detector.version, detector, choice
            self.settings, self.thresholds = plan.settings, thresholds_for(plan.settings, choice)
            self.geometries = geometries
        q = plan.settings.queue
        if plan.touches("queue"):
            self.queue.reconfigure(q)
            self.parts.resize(q.flag_parts, q.flag_frames_bytes)
        if plan.cameras:
            self.workers.apply(plan.cameras, plan.settings.cameras)
            for name in plan.cameras.removed:
                self.board.forget(name)
        self.board.set_recent(plan.settings.station.recent_frames)
        return previous

    def _move_station(self, plan: ReloadPlan) -> None:
        """New station or pictures settings (StationRefused: the station serves on its old ones, nothing applied)."""
        if self.station_link is not None and (plan.touches("station") or plan.touches("pictures")):
            s = plan.settings
            self.pictures = self.station_link.follow(s.station, s.pictures, self.settings.pictures, self.pictures)

    def _load_model(self, plan: ReloadPlan) -> tuple[ModelChoice, Detector]:
        """A freshly loaded detector when the plan asks for one, else the serving one (thresholds-only change)."""
        if not plan.load_model:
            return self.choice, self.detector
        choice = choose_model(plan.settings)
        return choice, self.detector_factory(plan.settings, choice)

    def _reload_quietly(self) -> None:
        """SIGHUP: a failed reload is logged and announced by `reload`; the loop goes on with the old model."""
        with contextlib.suppress(Exception):  # any load failure leaves the current model serving
            self.reload()

    # ----- shutdown ---------------------------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.reload_event.set())

    def stop(self) -> None:
        self.stop_event.set()

    def shutdown(self) -> None:
        """Stop cameras, inspect what is already queued, deliver the outbox, publish `offline`, close the stores."""
        self.notifier.stopping()
        if not self._reload_lock.acquire(timeout=SHUTDOWN_WAITS_FOR_RELOAD_S):  # kept: no reload starts a camera now
            log.warning("a reload did not finish in time; stopping anyway")
        if self.station_link is not None:
            self.station_link.stop()
        self.workers.stop_all(timeout=2.0)
        self.handshake.tick(stopping=True)  # parts still waiting for a frame will get none
        while self.step():
            pass
        self.results.close()
        for side in (self.opcua, self.sparkplug):  # after the last results, so the line sees them
            if side is not None:
                side.stop()
        self.watchdog.stop()
        self.router.stop()
        self.publisher.stop()
        self.metrics.close()
        self.outbox.close()
        self.queue.close()
        log.info("daemon stopped")
