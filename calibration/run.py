"""The recalibration run: snapshot -> train -> evaluate -> fit thresholds -> gate -> promote -> notify -> report.

Started by `edge-inspect recalibrate` (by hand, or by the systemd oneshot unit when the daemon left a request file).
It never touches the running daemon directly: it writes a new adapter into the model store, switches `current` only
when the gate passes, and then either publishes `cmd/reload` (notify "mqtt") or leaves the reload to the systemd
unit (notify "none"). Whatever goes wrong, the store's current adapter is left as it was, the report says why, and
the run ends with a non-zero exit code (see `Outcome`).

Every step is a function of its own, named in the progress events (`recalibration_progress`, `step=...`):
`snapshot`, `replay`, `train`, `evaluate`, `thresholds`, `gate`, `promote`, `notify`, `report`.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import IntEnum
from pathlib import Path
from typing import Any

import cv2
import structlog

from agent.config import Settings
from agent.detections import Detections
from agent.store import ModelStore, StoreError
from calibration.thresholds import ThresholdFit, fit_thresholds, thresholds_of
from finetune.data.dataset import Dataset, Sample

log = structlog.get_logger("calibration.run")
STEPS: tuple[str, ...] = ("snapshot", "replay", "train", "evaluate", "thresholds", "gate", "promote", "notify",
                          "report")


class Outcome(IntEnum):
    """The run's result; the value is the process exit code."""

    PROMOTED = 0
    FAILED = 1
    REJECTED = 3  # the candidate did not pass the gate
    NOTHING_TO_LEARN = 4  # too few labelled frames in the queue


class RunError(RuntimeError):
    """A step that could not complete; the message names the step's input at fault."""


@dataclass(frozen=True)
class RunOptions:
    """Per-run choices on top of `settings.recalibration` (the CLI's flags; tests shrink training here)."""

    golden_set: Path | None = None
    target_precision: float | None = None
    max_minutes: float | None = None
    notify: str | None = None
    work_dir: Path | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)


# ----- events -------------------------------------------------------------------------------------------------------
EventSink = Callable[..., None]


class Events:
    """Progress to the log and, when a broker answers, to `{prefix}/{device}/events` (same shape as the daemon's)."""

    def __init__(self, settings: Settings, mqtt_enabled: bool) -> None:
        self.settings = settings
        self.client: Any = connect_mqtt(settings, f"{settings.client_id}-recalibrate") if mqtt_enabled else None
        self.topic = f"{settings.base_topic}/events"

    def __call__(self, kind: str, **fields: Any) -> None:
        log.info(kind.replace("_", " "), **fields)
        if self.client is None:
            return
        payload = {"event": kind, "ts": datetime.now(timezone.utc).isoformat(), "device": self.settings.device_id,
                   **fields}
        info = self.client.publish(self.topic, json.dumps(payload, default=str), qos=1)
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(timeout=5.0)

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


def connect_mqtt(settings: Settings, client_id: str, timeout_s: float = 5.0) -> Any:
    """A connected paho client (MQTT v5, the daemon's credentials and TLS), or None when the broker is unreachable."""
    import paho.mqtt.client as mqtt

    m = settings.mqtt
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if m.username:
        client.username_pw_set(m.username, m.password.get_secret_value() if m.password else None)
    if m.tls.enabled:
        client.tls_set(ca_certs=str(m.tls.ca_file) if m.tls.ca_file else None,
                       certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                       keyfile=str(m.tls.key_file) if m.tls.key_file else None)
        client.tls_insecure_set(m.tls.insecure)
    try:
        client.connect(m.host, m.port, keepalive=30)
    except OSError as exc:
        log.warning("no MQTT broker; progress goes to the log only", host=m.host, port=m.port, error=str(exc))
        return None
    client.loop_start()
    deadline = time.monotonic() + timeout_s
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not client.is_connected():
        client.loop_stop()
        log.warning("MQTT broker did not accept the connection in time", host=m.host, port=m.port)
        return None
    return client


# ----- the report ---------------------------------------------------------------------------------------------------
@dataclass
class Report:
    """What the run did; written as report.json and report.md in the run folder."""

    run_id: str
    run_dir: Path
    outcome: Outcome = Outcome.FAILED
    reason: str = ""
    current: str | None = None
    candidate: str | None = None  # store version of the candidate, once stored
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "outcome": self.outcome.name.lower(), "exit_code": int(self.outcome),
                "reason": self.reason, "current": self.current, "candidate": self.candidate, "data": self.data,
                "training": self.training, "evaluation": self.evaluation, "gate": self.gate,
                "thresholds": self.thresholds, "steps": self.steps, "files": self.files}


# ----- steps --------------------------------------------------------------------------------------------------------
def snapshot_queue(state_dir: Path, class_names: tuple[str, ...], out: Path) -> Dataset:
    """The labelled queue frames as a Florence JSONL set in `out` (rejected and unlabelled frames never train).

    A frame labelled without reviewed boxes keeps its predictions above the thresholds it was judged with.
    """
    from agent.config import QueueConfig
    from agent.learn.queue import LearningQueue
    from finetune.data.jsonl import write_jsonl

    queue_dir = Path(state_dir) / "queue"
    if not (queue_dir / "index.sqlite3").is_file():
        return Dataset(class_names, [])
    queue = LearningQueue(queue_dir, QueueConfig())
    try:
        entries = queue.list(status="labelled")
        images = out / "images"
        images.mkdir(parents=True, exist_ok=True)
        samples = [Sample(copy_frame(entry.path, images), labels_of(entry, class_names)) for entry in entries]
    finally:
        queue.close()
    dataset = Dataset(class_names, samples, root=images)
    if samples:
        write_jsonl(dataset, out, overwrite=True)
    return dataset


def copy_frame(src: Path, folder: Path) -> Path:
    image = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if image is None:
        raise RunError(f"queue frame {src} is missing or unreadable")
    target = folder / src.name
    cv2.imwrite(str(target), image)
    return target


def labels_of(entry: Any, class_names: tuple[str, ...]) -> Detections:
    boxes: Detections = entry.labels
    if boxes is None:
        keep = [s >= entry.thresholds.get(label, 0.5) for label, s in zip(entry.detections.labels,
                                                                            entry.detections.score)]
        boxes = entry.detections[keep] if len(entry.detections) else entry.detections
    try:
        return Detections.from_labels(boxes.labels, boxes.xyxy, class_names, boxes.image_size)
    except ValueError as exc:
        raise RunError(f"queue entry {entry.id}: {exc}") from exc


def replay_sample(path: Path | None, count: int, seed: int, class_names: tuple[str, ...]) -> list[Sample]:
    """Up to `count` random samples of earlier training data (Florence JSONL), so the adapter does not forget."""
    if path is None or count <= 0:
        return []
    from finetune.data import read_dataset
    from finetune.train import align_classes

    dataset = read_dataset("jsonl", Path(path))
    chosen = random.Random(seed).sample(range(len(dataset.samples)), min(count, len(dataset.samples)))
    subset = Dataset(dataset.class_names, [dataset.samples[i] for i in sorted(chosen)])
    return align_classes(subset, class_names, f"replay data {path}")


def compare(current: dict[str, Any], candidate: dict[str, Any], margin: float) -> dict[str, Any]:
    """The gate: every class within `margin` AP of the current model and the mean AP not lower."""
    per_class: dict[str, dict[str, float | None]] = {}
    failures: list[str] = []
    for name, new in candidate["per_class"].items():
        old = current["per_class"].get(name)
        delta = None if old is None or new is None else new - old
        per_class[name] = {"current": old, "candidate": new, "delta": delta}
        if delta is not None and delta < -margin:
            failures.append(f"class {name!r} loses {-delta:.3f} AP ({old:.3f} -> {new:.3f}; margin {margin:g})")
    if candidate["map"] < current["map"] - 1e-9:
        failures.append(f"mean AP drops from {current['map']:.3f} to {candidate['map']:.3f}")
    return {"passed": not failures, "failures": failures, "margin": margin, "per_class": per_class,
            "map": {"current": current["map"], "candidate": candidate["map"]},
            "map50": {"current": current["map50"], "candidate": candidate["map50"]}}


def reload_daemon(settings: Settings) -> dict[str, Any]:
    """Publish `cmd/reload` (signed when the daemon requires signatures); returns what was sent."""
    import uuid

    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from agent.control.commands import command_signature

    client = connect_mqtt(settings, f"{settings.client_id}-recalibrate-reload")
    if client is None:
        raise RunError(f"cannot reach the MQTT broker {settings.mqtt.host}:{settings.mqtt.port} to send cmd/reload")
    topic, payload = f"{settings.base_topic}/cmd/reload", json.dumps({"scope": "model"}).encode()
    props = Properties(PacketTypes.PUBLISH)
    key = settings.commands.hmac_key
    if key is not None:
        ts, command_id = f"{time.time():.3f}", uuid.uuid4().hex
        sig = command_signature(key.get_secret_value().encode(), topic, ts, command_id, payload)
        props.UserProperty = [("ts", ts), ("command_id", command_id), ("sig", sig)]
    try:
        client.publish(topic, payload, qos=1, properties=props).wait_for_publish(timeout=10.0)
    finally:
        client.disconnect()
        client.loop_stop()
    return {"topic": topic, "signed": key is not None}


# ----- the run ------------------------------------------------------------------------------------------------------
class Recalibration:
    """One run over the daemon's settings; `run()` returns the report whatever happened."""

    def __init__(self, settings: Settings, options: RunOptions = RunOptions(), events: EventSink | None = None
                 ) -> None:
        self.settings, self.options = settings, options
        self.cfg = settings.recalibration
        self.events: EventSink = events or (lambda kind, **fields: log.info(kind, **fields))
        self.store = ModelStore.in_state_dir(settings.state_dir)
        run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        root = options.work_dir or self.cfg.work_dir or settings.state_dir / "recalibration"
        self.report = Report(run_id, Path(root) / run_id)
        self.class_names = tuple(settings.model.classes)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        """Announce a step, time it, record it; an exception names the step that failed."""
        self.events("recalibration_progress", run_id=self.report.run_id, step=name, state="started")
        record: dict[str, Any] = {"step": name}
        started = time.monotonic()
        try:
            yield record
        except Exception as exc:
            record.update(state="failed", error=str(exc))
            raise RunError(f"step {name!r} failed: {exc}") from exc
        else:
            record.setdefault("state", "done")
        finally:
            record["seconds"] = round(time.monotonic() - started, 2)
            self.report.steps.append(record)
            self.events("recalibration_progress", run_id=self.report.run_id, **record)

    def run(self) -> Report:
        self.report.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._run_steps()
        except (RunError, StoreError) as exc:
            self.report.outcome, self.report.reason = Outcome.FAILED, str(exc)
        with contextlib.suppress(OSError):
            write_report(self.report)
        level = log.info if self.report.outcome is Outcome.PROMOTED else log.error
        level("recalibration finished", outcome=self.report.outcome.name.lower(), reason=self.report.reason)
        self.events("recalibration_finished", run_id=self.report.run_id, outcome=self.report.outcome.name.lower(),
                    reason=self.report.reason, current=self.report.current, candidate=self.report.candidate,
                    report=str(self.report.run_dir / "report.json"))
        return self.report

    def _run_steps(self) -> None:
        golden = self._golden_path()
        current = self._current_adapter()
        train_set = self._snapshot_and_replay()
        if train_set is None:
            return
        candidate = self._train(train_set, current)
        reports = self._evaluate(golden, current, candidate)
        fits = self._fit_thresholds(reports["candidate"])
        if not self._gate(reports):
            return
        version = self._promote(candidate, fits, reports["candidate"])
        self._notify(version)

    def _golden_path(self) -> Path:
        golden = self.options.golden_set or self.cfg.golden_set
        if golden is None:
            raise RunError("no golden set: set recalibration.golden_set in the config or pass --golden")
        if not Path(golden).exists():
            raise RunError(f"golden set {golden} does not exist")
        return Path(golden)

    def _current_adapter(self) -> Path | None:
        """The serving adapter (the store's current, verified), after checking the store's base is our model."""
        model_dir = self.settings.model.path
        if self.store.base() is None:
            self.store.set_base(model_dir)
        else:
            self.store.verify_base(model_dir)
        version = self.store.current()
        self.report.current = version
        if version is not None:
            self.store.verify(version)
            return self.store.path(version)
        return self.settings.model.adapter

    def _snapshot_and_replay(self) -> Dataset | None:
        with self.step("snapshot") as record:
            queued = snapshot_queue(self.settings.state_dir, self.class_names, self.report.run_dir / "snapshot")
            record["labelled_frames"] = len(queued.samples)
        if len(queued.samples) < self.cfg.min_labelled:
            self.report.outcome = Outcome.NOTHING_TO_LEARN
            self.report.reason = (f"{len(queued.samples)} labelled queue frame(s), at least {self.cfg.min_labelled} "
                                  "needed: review frames with `edge-inspect queue export/import` first")
            return None
        with self.step("replay") as record:
            count = min(self.cfg.replay_max, round(self.cfg.replay_ratio * len(queued.samples)))
            replay = replay_sample(self.cfg.replay_data, count, self.cfg.seed, self.class_names)
            record["replay_frames"] = len(replay)
        self.report.data = {"labelled_frames": len(queued.samples), "replay_frames": len(replay),
                            "snapshot": str(self.report.run_dir / "snapshot")}
        return Dataset(self.class_names, queued.samples + replay)

    def _train(self, train_set: Dataset, current: Path | None) -> Path:
        from finetune.lora import LoraSettings
        from finetune.train import TrainConfig, train_lora

        minutes = self.options.max_minutes or self.cfg.max_minutes
        base = {"epochs": self.cfg.epochs, "batch_size": self.cfg.batch_size, "lr": self.cfg.lr,
                "seed": self.cfg.seed, "max_seconds": minutes * 60, "max_memory_mb": self.cfg.max_memory_mb,
                "lora": LoraSettings(r=self.cfg.lora_r, alpha=self.cfg.lora_alpha), "eval_map": False}
        config = TrainConfig(**{**base, **self.options.train_overrides})
        out = self.report.run_dir / "candidate"
        with self.step("train") as record:
            result = train_lora(self.settings.model.path, train_set, out, config, init_adapter=current,
                                run_dir=self.report.run_dir / "training")
            record.update(steps=result.steps, final_loss=result.final_loss, stopped=result.stopped)
        self.report.training = {"steps": result.steps, "final_loss": result.final_loss, "stopped": result.stopped,
                                "parent": self.report.current, "run_dir": str(result.run_dir)}
        self.report.files["training_plot"] = "training/training.png"
        return out

    def _evaluate(self, golden: Path, current: Path | None, candidate: Path) -> dict[str, Any]:
        from agent.detector.florence2 import DetectorOptions, Florence2Detector
        from finetune.data import read_dataset
        from finetune.evaluate import EvalOptions, evaluate

        reports: dict[str, Any] = {}
        with self.step("evaluate") as record:
            dataset = read_dataset("jsonl", golden)
            options = EvalOptions(annotated_frames=4)
            for name, adapter in (("current", current), ("candidate", candidate)):
                detector = Florence2Detector(self.settings.model.path, adapter, self.class_names,
                                             DetectorOptions(device=self.settings.model.device))
                thresholds = dict(self.settings.model.thresholds) or self.settings.model.default_threshold
                reports[name] = evaluate(detector, dataset, self.report.run_dir / name, thresholds, options)
                record[f"{name}_map"] = reports[name].map
                self.report.files[f"{name}_pr_curves"] = f"{name}/pr_curves.png"
        self.report.evaluation = {name: {"map": r.map, "map50": r.map50, "per_class": r.per_class,
                                         "model": r.model, "images": len(dataset.samples)}
                                  for name, r in reports.items()}
        return reports

    def _fit_thresholds(self, candidate: Any) -> dict[str, ThresholdFit]:
        metric = "recall" if self.cfg.target_recall is not None else "precision"
        target = self.cfg.target_recall if metric == "recall" else (self.options.target_precision
                                                                    or self.cfg.target_precision)
        fallback = {name: self.settings.model.threshold(name) for name in self.class_names}
        with self.step("thresholds") as record:
            fits = fit_thresholds(candidate.pr, float(target or 0.9), metric, fallback)  # type: ignore[arg-type]
            record["thresholds"] = thresholds_of(fits)
        self.report.thresholds = {"metric": metric, "target": target,
                                  "classes": {name: fit.to_json() for name, fit in fits.items()}}
        return fits

    def _gate(self, reports: dict[str, Any]) -> bool:
        with self.step("gate") as record:
            gate = compare(self.report.evaluation["current"], self.report.evaluation["candidate"],
                           self.cfg.ap_margin)
            record.update(passed=gate["passed"], failures=gate["failures"])
        self.report.gate = gate
        if not gate["passed"]:
            self.report.outcome = Outcome.REJECTED
            self.report.reason = "candidate rejected, the current model keeps serving: " + "; ".join(gate["failures"])
        return bool(gate["passed"])

    def _promote(self, candidate: Path, fits: dict[str, ThresholdFit], report: Any) -> str:
        with self.step("promote") as record:
            metrics = {"map": report.map, "map50": report.map50, "per_class": report.per_class,
                       "golden_set": str(self._golden_path())}
            version = self.store.add_adapter(candidate, parent=self.report.current, metrics=metrics,
                                             thresholds=thresholds_of(fits),
                                             extra={"recalibration_run": self.report.run_id})
            self.report.candidate = version
            self.store.promote(version)
            record["version"] = version
        self.report.outcome = Outcome.PROMOTED
        self.report.reason = f"promoted {version} (was {self.report.current or 'the base model alone'})"
        return version

    def _notify(self, version: str) -> None:
        mode = self.options.notify or self.cfg.notify
        with self.step("notify") as record:
            record["mode"] = mode
            if mode == "mqtt":
                try:
                    record.update(reload_daemon(self.settings))
                except RunError as exc:  # the promotion stands; the daemon serves it after its next reload
                    record["warning"] = str(exc)
                    self.report.reason += f"; {exc} (reload the daemon by hand: systemctl reload edge-inspect)"


def write_report(report: Report) -> None:
    """report.json and report.md (tables + links to the plots) in the run folder."""
    report.files.update({"json": "report.json", "markdown": "report.md"})
    (report.run_dir / "report.json").write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    (report.run_dir / "report.md").write_text(report_markdown(report))


def report_markdown(report: Report) -> str:
    lines = [f"# Recalibration run {report.run_id}", "", f"**Outcome: {report.outcome.name.lower()}** — "
             f"{report.reason}", "", f"- current model: {report.current or 'base model alone'}",
             f"- candidate version: {report.candidate or '(not stored)'}",
             f"- data: {report.data.get('labelled_frames', 0)} labelled queue frames, "
             f"{report.data.get('replay_frames', 0)} replay frames",
             f"- training: {report.training.get('steps', 0)} steps, final loss "
             f"{report.training.get('final_loss', float('nan')):.4f}"
             + (f" (stopped early: {report.training['stopped']})" if report.training.get("stopped") else ""), ""]
    if report.gate:
        lines += ["## Golden set (AP@[.5:.95])", "", "| class | current | candidate | change |",
                  "| --- | --- | --- | --- |"]
        for name, row in report.gate["per_class"].items():
            lines.append(f"| {name} | {_num(row['current'])} | {_num(row['candidate'])} | "
                         f"{_num(row['delta'], True)} |")
        lines += [f"| **mean** | {_num(report.gate['map']['current'])} | {_num(report.gate['map']['candidate'])} | "
                  f"{_num(report.gate['map']['candidate'] - report.gate['map']['current'], True)} |", ""]
        lines += [f"- gate failure: {f}" for f in report.gate["failures"]] or ["- gate passed"]
        lines.append("")
    if report.thresholds:
        lines += [f"## Thresholds ({report.thresholds['metric']} >= {report.thresholds['target']})", "",
                  "| class | threshold | precision | recall | note |", "| --- | --- | --- | --- | --- |"]
        for name, fit in report.thresholds["classes"].items():
            lines.append(f"| {name} | {fit['threshold']:.3f} | {_num(fit['precision'])} | {_num(fit['recall'])} | "
                         f"{fit['reason']} |")
        lines.append("")
    plots = [(k, v) for k, v in report.files.items() if v.endswith(".png")]
    lines += ["## Plots", ""] + [f"![{k}]({v})" for k, v in plots] if plots else []
    return "\n".join(lines) + "\n"


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def recalibrate(settings: Settings, options: RunOptions = RunOptions()) -> Report:
    """Run once with progress on the log and, when enabled and reachable, on MQTT."""
    events = Events(settings, settings.recalibration.publish_events)
    try:
        return Recalibration(settings, options, events).run()
    finally:
        events.close()
