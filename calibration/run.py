"""The recalibration run: snapshot -> train -> (export) -> evaluate -> fit score calibration, then thresholds -> gate ->
promote -> notify -> report.

Started by `edge-inspect recalibrate` (by hand, by the station's recalibration page, or by the systemd oneshot unit
when the daemon left a request file). It never touches the running daemon directly: it writes a new adapter into the
model store, switches `current` only when the gate passes, and then either publishes `cmd/reload` (notify "mqtt") or
leaves the reload to the systemd unit (notify "none"). Whatever goes wrong, the store's current adapter is left as it
was, the report says why, and the run ends with a non-zero exit code (see `Outcome`).

Only human-verified queue frames train (`verified("training")`) or judge (`verified("golden")`, plus an external
golden set when configured); a run refuses to start while the golden set is too small per class. Both models are
evaluated on the backend the line serves (`calibration.evaluation`), and the gate promotes only a real improvement
(`calibration.gate`).

Every step is a function of its own, named in the progress events (`recalibration_progress`, `step=...`) and in
`<run_dir>/progress.json` (`calibration.progress`, for the station): `snapshot`, `replay`, `train`, `export` (onnx
lines only), `evaluate`, `thresholds`, `gate`, `promote`, `notify`, `report`. SIGTERM cancels the run cleanly
(outcome `cancelled`, nothing promoted).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.config import Settings
from agent.decide import Thresholds
from agent.detections import Detections
from agent.detector.score_calibration import MANIFEST_KEY, ScoreCalibration
from agent.model_choice import base_calibration, base_model_dir, base_thresholds, store_calibration
from agent.runs import new_run_id
from agent.statedir import StateDir
from agent.store.files import StoreError
from agent.store.model_store import ModelStore
from calibration.evaluation import (
    Contender,
    GoldenResult,
    export_candidate,
    line_detector,
    predict_golden,
    summary,
    write_golden_report,
)
from calibration.gate import GateRules, Judged, judge, scores_of
from calibration.golden import GoldenSet, golden_set, too_small_reason
from calibration.notify import Events, EventSink, reload_daemon
from calibration.progress import RunWatch, cancel_on_sigterm
from calibration.report import Cancelled, Outcome, Report, RunError, run_state, write_report
from calibration.score_calibration import calibrate_predictions, fit_calibration
from calibration.snapshot import replay_sample, snapshot_queue
from calibration.thresholds import ThresholdFit, fit_thresholds, thresholds_of
from calibration.verdicts import verdict_changes
from finetune.data.dataset import Dataset
from finetune.metrics import class_pr_data
from finetune.reliability import OVERALL

if TYPE_CHECKING:
    from agent.config.recalibration import RecalibrationConfig
    from finetune.train.config import TrainConfig

log = structlog.get_logger("calibration.run")
STEPS: tuple[str, ...] = ("snapshot", "replay", "train", "export", "evaluate", "thresholds", "gate", "promote",
                          "notify", "report")


@dataclass(frozen=True)
class RunOptions:
    """Per-run choices on top of `settings.recalibration` (the CLI's flags; tests shrink training here)."""

    golden_set: Path | None = None
    target_precision: float | None = None
    max_minutes: float | None = None
    notify: str | None = None
    work_dir: Path | None = None
    run_id: str | None = None  # default: a new `agent.runs.new_run_id()`
    promote: bool = True  # False: a passing candidate is stored but not made current (the station's technician decides)
    train_overrides: dict[str, Any] = field(default_factory=dict)


def train_config(cfg: RecalibrationConfig, options: RunOptions) -> TrainConfig:
    """The training settings of a run: `settings.recalibration`, then the run's `train_overrides` on top."""
    from finetune.lora import LoraSettings
    from finetune.train.config import AugmentSettings, TrainConfig

    minutes = options.max_minutes or cfg.max_minutes
    base = {"epochs": cfg.epochs, "min_steps": cfg.min_steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "seed": cfg.seed, "max_seconds": minutes * 60, "max_memory_mb": cfg.max_memory_mb, "eval_map": False,
            "lora": LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, vision=cfg.lora_vision,
                                 whole=tuple(cfg.lora_whole)),
            "augment": AugmentSettings() if cfg.augment else None, "hard_fraction": cfg.hard_examples,
            "schedule": cfg.schedule, "loc_sigma": cfg.loc_sigma}
    return TrainConfig(**{**base, **options.train_overrides})


# ----- the run ------------------------------------------------------------------------------------------------------
class Recalibration:
    """One run over the daemon's settings; `run()` returns the report whatever happened."""

    def __init__(self, settings: Settings, options: RunOptions = RunOptions(), events: EventSink | None = None
                 ) -> None:
        self.settings, self.options = settings, options
        self.cfg = settings.recalibration
        self.events: EventSink = events or (lambda kind, **fields: log.info(kind, **fields))
        self.store = ModelStore.in_state_dir(settings.state_dir)
        run_id = options.run_id or new_run_id()
        root = options.work_dir or self.cfg.work_dir or StateDir(settings.state_dir).recalibration
        self.report = Report(run_id, Path(root) / run_id)
        self.watch = RunWatch(self.report.run_dir, run_id)
        self.class_names = tuple(settings.model.classes)
        self.base_dir = base_model_dir(settings)

    def cancel(self) -> None:
        """Stop at the next safe point: outcome `cancelled`, nothing promoted (what SIGTERM does)."""
        self.watch.cancel()

    @contextlib.contextmanager
    def step(self, name: str, cancellable: bool = True) -> Iterator[dict[str, Any]]:
        """Announce a step, time it, record it; an exception names the step that failed. A cancel stops the run
        before a cancellable step (not after a promotion: that stands)."""
        if cancellable:
            self.watch.check()
        self.watch.stage(name)
        self.events("recalibration_progress", run_id=self.report.run_id, step=name, state="started")
        record: dict[str, Any] = {"step": name}
        started = time.monotonic()
        try:
            yield record
        except Cancelled:
            record["state"] = "cancelled"
            raise
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
        self.watch.stage("starting")
        try:
            self._run_steps()
        except (RunError, StoreError) as exc:
            self.report.outcome, self.report.reason = Outcome.FAILED, str(exc)
        except Cancelled as exc:
            self.report.outcome, self.report.reason = Outcome.CANCELLED, str(exc)
        if self.report.outcome not in (Outcome.FAILED, Outcome.CANCELLED):  # those keep the stage they stopped in
            self.watch.stage("report")
        with contextlib.suppress(OSError):
            write_report(self.report)
        self.watch.finish(run_state(self.report.outcome), self.report.reason)
        level = log.info if self.report.outcome in (Outcome.PROMOTED, Outcome.PASSED) else log.error
        level("recalibration finished", outcome=self.report.outcome.name.lower(), reason=self.report.reason)
        self.events("recalibration_finished", run_id=self.report.run_id, outcome=self.report.outcome.name.lower(),
                    reason=self.report.reason, current=self.report.current, candidate=self.report.candidate,
                    report=str(self.report.run_dir / "report.json"))
        return self.report

    def _run_steps(self) -> None:
        external = self._external_golden()
        current = self._current_model()
        sets = self._snapshot(external)
        if sets is None:
            return
        train_set, golden = sets
        adapter = self._train(self._replay(train_set), current.adapter)
        candidate = Contender("candidate", adapter, current.thresholds, self._export(adapter))
        results = self._evaluate(golden, (current, candidate))
        fits, candidate, results["candidate"] = self._fit_thresholds(golden, candidate, results["candidate"],
                                                                     current.thresholds)
        self.report.verdicts = verdict_changes(golden.dataset, golden.entry_ids, results["current"].predictions,
                                               results["candidate"].predictions,
                                               (current.thresholds, candidate.thresholds), self.report.run_dir)
        if not self._gate(golden, results):
            return
        version = self._promote(adapter, fits, candidate.calibration, results["candidate"].report)
        if self.options.promote:
            self._notify(version)

    # ----- inputs -------------------------------------------------------------------------------------------------
    def _external_golden(self) -> Path | None:
        """The configured external golden set file, if any (checked before anything else is done)."""
        golden = self.options.golden_set or self.cfg.golden_set
        if golden is not None and not Path(golden).exists():
            raise RunError(f"golden set {golden} does not exist")
        return None if golden is None else Path(golden)

    def _current_model(self) -> Contender:
        """The serving model (the store's current, verified) after checking the store's base is our base model."""
        if self.settings.model.backend == "onnx" and self.cfg.base_model is None:
            raise RunError("model.backend is onnx, so model.path is an ONNX export the run cannot train: set "
                           "recalibration.base_model to the base model folder it was exported from")
        if self.store.base() is None:
            self.store.set_base(self.base_dir)
        else:
            self.store.verify_base(self.base_dir)
        version = self.store.current()
        self.report.current = version
        if version is None:
            return Contender("current", self.settings.model.adapter, self._thresholds({}),
                             calibration=base_calibration(self.settings))
        manifest = self.store.verify(version)
        export = self.store.export_path(version) if self.settings.model.backend == "onnx" else None
        if self.settings.model.backend == "onnx" and export is None:
            raise RunError(f"the current adapter {version} has no ONNX export, so this onnx line cannot serve it")
        return Contender("current", self.store.path(version), self._thresholds(manifest.thresholds), export,
                         store_calibration(manifest.extra, self.store.path(version)))

    def _thresholds(self, fitted: dict[str, float]) -> Thresholds:
        """What the daemon judges with: the model folder's thresholds.json, then `fitted`, then the config's own."""
        m = self.settings.model
        return Thresholds({**base_thresholds(self.settings), **fitted, **m.thresholds}, m.default_threshold,
                          m.uncertain_band)

    def _snapshot(self, external: Path | None) -> tuple[Dataset, GoldenSet] | None:
        """Verified training and golden frames; None (and the outcome) when there is too little to learn or judge."""
        run_dir, state_dir, queue = self.report.run_dir, self.settings.state_dir, self.settings.queue
        with self.step("snapshot") as record:
            queued = snapshot_queue(state_dir, self.class_names, run_dir / "snapshot", queue)
            record["labelled_frames"] = len(queued.samples)
            learnable = len(queued.samples) >= self.cfg.min_labelled
            golden = golden_set(state_dir, self.class_names, run_dir / "golden", queue, external) if learnable else None
            record["golden_frames"] = len(golden.dataset.samples) if golden is not None else None
        self.report.data = {"training_frames": len(queued.samples), "labelled_frames": len(queued.samples),
                            "snapshot": str(run_dir / "snapshot")}
        if golden is None:
            self.report.outcome = Outcome.NOTHING_TO_LEARN
            self.report.reason = (f"{len(queued.samples)} labelled queue frame(s) verified for training, at least "
                                  f"{self.cfg.min_labelled} needed: review frames in the station (or with "
                                  "`edge-inspect queue export/import`) first")
            return None
        self.report.data["golden"] = golden.to_json(self.cfg.min_golden_per_class)
        too_small = too_small_reason(golden, self.cfg.min_golden_per_class)
        if too_small is not None:
            self.report.outcome, self.report.reason = Outcome.GOLDEN_TOO_SMALL, too_small
            return None
        return queued, golden

    def _replay(self, queued: Dataset) -> Dataset:
        with self.step("replay") as record:
            count = min(self.cfg.replay_max, round(self.cfg.replay_ratio * len(queued.samples)))
            replay = replay_sample(self.cfg.replay_data, count, self.cfg.seed, self.class_names)
            record["replay_frames"] = len(replay)
        self.report.data["replay_frames"] = len(replay)
        return Dataset(self.class_names, queued.samples + replay)

    # ----- training and evaluation ----------------------------------------------------------------------------------
    def _train(self, train_set: Dataset, current: Path | None) -> Path:
        from finetune.families import lora_trainer
        from finetune.train.run import train_lora

        config = train_config(self.cfg, self.options)
        out = self.report.run_dir / "candidate"
        train = lora_trainer(self.base_dir) or train_lora  # the base model's family (Florence-2: train_lora)
        with self.step("train") as record:
            self.watch.start_training(config.max_seconds)
            result = train(self.base_dir, train_set, out, config, init_adapter=current,
                           run_dir=self.report.run_dir / "training", progress=self.watch.training_step)
            record.update(steps=result.steps, final_loss=result.final_loss, stopped=result.stopped)
        self.report.training = {"steps": result.steps, "final_loss": result.final_loss, "stopped": result.stopped,
                                "parent": self.report.current, "run_dir": str(result.run_dir)}
        self.report.files["training_plot"] = "training/training.png"
        return out

    def _export(self, adapter: Path) -> Path | None:
        """On an onnx line: the candidate merged and exported at `onnx_precision` (what the line would serve)."""
        if self.settings.model.backend != "onnx":
            return None
        with self.step("export") as record:
            export = export_candidate(self.base_dir, adapter, self.cfg.onnx_precision, self.class_names)
            record["precision"] = self.cfg.onnx_precision
        return export

    def _evaluate(self, golden: GoldenSet, contenders: tuple[Contender, ...]) -> dict[str, GoldenResult]:
        """Both models on the golden set, on the line's backend; reports and plots in `<run_dir>/<name>/`."""
        results: dict[str, GoldenResult] = {}
        with self.step("evaluate") as record:
            for contender in contenders:
                detector = line_detector(self.settings, self.base_dir, contender)
                predictions = predict_golden(detector, golden.dataset, self.watch.batches)
                results[contender.name] = write_golden_report(golden.dataset, predictions, contender,
                                                              self.report.run_dir, getattr(detector, "version", None))
                record[f"{contender.name}_map"] = results[contender.name].report.map
                del detector  # one model in memory at a time
        backend = self.settings.model.backend
        self.report.evaluation = {"backend": backend, "images": len(golden.dataset.samples),
                                  **({"precision": self.cfg.onnx_precision} if backend == "onnx" else {})}
        for name, result in results.items():
            self._record_evaluation(name, result, len(golden.dataset.samples))
        return results

    def _record_evaluation(self, name: str, result: GoldenResult, images: int) -> None:
        self.report.evaluation[name] = summary(result, images)
        self.report.files.update({f"{name}_{key}": path for key, path in result.files.items()})

    def _fit_thresholds(self, golden: GoldenSet, candidate: Contender, result: GoldenResult, current: Thresholds
                        ) -> tuple[dict[str, ThresholdFit], Contender, GoldenResult]:
        """The candidate's score calibration (fitted on its raw golden-set scores), then per-class thresholds on the
        calibrated scores (a class that cannot be fitted keeps the current one); its report is re-written with both,
        so its confusion matrix and reliability diagram show what the line would see."""
        metric = "recall" if self.cfg.target_recall is not None else "precision"
        target = self.cfg.target_recall if metric == "recall" else (self.options.target_precision
                                                                    or self.cfg.target_precision)
        fallback = current.for_classes(self.class_names)
        with self.step("thresholds") as record:
            scores = fit_calibration(result.report.pr)
            predictions = calibrate_predictions(result.predictions, scores)
            pr = class_pr_data(self._truth(golden), predictions, self.class_names, result.report.iou)
            fits = fit_thresholds(pr, float(target or 0.9), metric, fallback)  # type: ignore[arg-type]
            record.update(thresholds=thresholds_of(fits), calibrated=[n for n, c in scores.classes.items() if c.fitted])
            candidate = replace(candidate, thresholds=self._thresholds(thresholds_of(fits)), calibration=scores)
            raw = result.report
            result = write_golden_report(golden.dataset, predictions, candidate, self.report.run_dir, raw.model)
        self.report.thresholds = {"metric": metric, "target": target,
                                  "classes": {name: fit.to_json() for name, fit in fits.items()},
                                  MANIFEST_KEY: scores.to_json(),  # fitted on the golden set: its ECE is in-sample
                                  "golden_ece": {"raw": raw.reliability()[OVERALL].ece,
                                                 "calibrated": result.report.reliability()[OVERALL].ece}}
        self._record_evaluation("candidate", result, len(golden.dataset.samples))
        return fits, candidate, result

    def _truth(self, golden: GoldenSet) -> list[Detections]:
        from finetune.evaluate import align_ground_truth

        return align_ground_truth(golden.dataset, self.class_names)

    # ----- decision and promotion -----------------------------------------------------------------------------------
    def _gate(self, golden: GoldenSet, results: dict[str, GoldenResult]) -> bool:
        """Judge the candidate against the current model; a failed gate ends the run REJECTED."""
        rules = GateRules(self.cfg.ap_margin, self.cfg.min_map50_delta, self.cfg.bootstrap_resamples, self.cfg.seed)
        with self.step("gate") as record:
            truth = self._truth(golden)
            current, candidate = (Judged(scores_of(results[name].report), results[name].predictions)
                                  for name in ("current", "candidate"))
            gate = judge(truth, self.class_names, current, candidate, rules, self.report.verdicts)
            record.update(passed=gate["passed"], rule=gate["rule"], failures=gate["failures"])
        self.report.gate = gate
        if not gate["passed"]:
            self.report.outcome = Outcome.REJECTED
            self.report.reason = (f"candidate rejected (rule {gate['rule']}), the current model keeps serving: "
                                  + "; ".join(gate["failures"]))
        return bool(gate["passed"])

    def _promote(self, candidate: Path, fits: dict[str, ThresholdFit], calibration: ScoreCalibration, report: Any
                 ) -> str:
        """Store the candidate (with its ONNX export on an onnx line, its thresholds and score calibration in the
        manifest) and, unless told not to, make it current."""
        with self.step("promote") as record:
            metrics = {**scores_of(report), "golden_set": self.report.data["golden"]}
            version = self.store.add_adapter(candidate, parent=self.report.current, metrics=metrics,
                                             thresholds=thresholds_of(fits),
                                             extra={"recalibration_run": self.report.run_id,
                                                    MANIFEST_KEY: calibration.to_json()})
            self.report.candidate = version
            record["version"] = version
            if not self.options.promote:
                record["state"] = "skipped"
                self.report.outcome = Outcome.PASSED
                self.report.reason = (f"the gate passed; stored as {version}, not promoted: the technician decides "
                                      f"({self.report.current or 'the base model alone'} keeps serving)")
                return version
            self.store.promote(version)
        self.report.outcome = Outcome.PROMOTED
        self.report.reason = f"promoted {version} (was {self.report.current or 'the base model alone'})"
        return version

    def _notify(self, version: str) -> None:
        mode = self.options.notify or self.cfg.notify
        with self.step("notify", cancellable=False) as record:
            record["mode"] = mode
            if mode == "mqtt":
                try:
                    record.update(reload_daemon(self.settings))
                except RunError as exc:  # the promotion stands; the daemon serves it after its next reload
                    record["warning"] = str(exc)
                    self.report.reason += f"; {exc} (reload the daemon by hand: systemctl reload edge-inspect)"


def recalibrate(settings: Settings, options: RunOptions = RunOptions()) -> Report:
    """Run once with progress on the log, in progress.json and, when enabled and reachable, on MQTT; SIGTERM
    cancels it cleanly."""
    events = Events(settings, settings.recalibration.publish_events)
    try:
        run = Recalibration(settings, options, events)
        with cancel_on_sigterm(run.watch):
            return run.run()
    finally:
        events.close()
