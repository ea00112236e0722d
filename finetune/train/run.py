"""`train_lora`: one run from data to adapter, with the bookkeeping around the trainer (steps, epochs, budgets,
checkpoints, validation, the run directory)."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.detector.tasks import DENSE, GROUNDING
from agent.store.files import utc_now, write_json_atomic
from finetune.data.dataset import Dataset, Sample, TaskSample
from finetune.lora import save_adapter, trainable_count
from finetune.train.adapter_io import adapter_version, write_adapter
from finetune.train.batches import align_classes, dataset_hash, model_class_names
from finetune.train.checkpoints import CHECKPOINTS, Checkpoints, check_resumable, fingerprint
from finetune.train.config import Progress, TrainConfig, TrainError
from finetune.train.task_mix import TaskMix, resolve_mix
from finetune.train.trainer import LoraTrainer, peak_memory_mb


@dataclass
class TrainResult:
    """What a run did and where it wrote it."""

    adapter_dir: Path
    run_dir: Path
    steps: int
    resumed_from: int | None
    stopped: str | None  # None when the planned steps ran; else the budget that ended training early
    history: list[dict[str, float]]
    epochs: list[dict[str, Any]]
    manifest: dict[str, Any]

    @property
    def final_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else math.nan


@dataclass
class _Plan:
    steps: int
    per_epoch: int
    epochs: int


def plan(n_samples: int, config: TrainConfig) -> _Plan:
    per_epoch = math.ceil(n_samples / config.batch_size)
    steps = config.max_steps if config.max_steps is not None else max(config.epochs * per_epoch, config.min_steps)
    return _Plan(steps, per_epoch, math.ceil(steps / per_epoch))


def train_lora(
    model_dir: Path,
    train_set: Dataset,
    out_dir: Path,
    config: TrainConfig = TrainConfig(),
    val_set: Dataset | None = None,
    init_adapter: Path | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    trainer_class: type[LoraTrainer] = LoraTrainer,
) -> TrainResult:
    """Train a LoRA adapter; see the `finetune.train` docstring for what lands in `out_dir` and `run_dir`.
    `trainer_class`: the model family's trainer (Florence-2's by default; finetune/paligemma/trainer.py)."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    run_dir = Path(run_dir) if run_dir is not None else out_dir.with_name(out_dir.name + ".run")
    if not train_set.samples and not train_set.tasks:
        raise TrainError("the training set has no samples")
    task_mix_of(train_set.samples, train_set.tasks, config)  # a mix the data cannot serve fails before any loading
    staged = config.unfreeze_vision_epoch is not None or config.schedule == "three-stage"
    if staged and not config.lora.vision and init_adapter is None:
        config = replace(config, lora=replace(config.lora, vision=True))  # staged unfreezing needs vision LoRA
    trainer = trainer_class(model_dir, config, init_adapter)
    class_names = model_class_names(model_dir)
    tokenizer = trainer.processor.tokenizer
    samples = align_classes(train_set, class_names, "training set", tokenizer)
    val = (align_classes(val_set, class_names, "validation set", tokenizer)
           if val_set is not None and val_set.samples else [])
    data_hash = dataset_hash(train_set)
    mix = task_mix_of(samples, train_set.tasks, config)
    run = _Run(trainer, mix, val, val_set, run_dir, plan(mix.items, config), progress)
    start = run.begin(fingerprint(model_dir, data_hash, config, init_adapter), resume)
    run.loop(start)
    parent = adapter_version(init_adapter)
    manifest = write_adapter(trainer.model, out_dir, model_dir, data_hash, parent, run.summary_metrics())
    run.finish(manifest)
    return TrainResult(out_dir, run_dir, run.step, start or None, run.stopped, run.history, run.epochs, manifest)


def task_mix_of(samples: list[Sample], lines: list[TaskSample], config: TrainConfig) -> TaskMix[Any]:
    """The pools (the <OD> frames, the data's region-caption and grounding lines) and the mix the run trains."""
    pools: dict[str, list[Any]] = {"od": samples, "dense": [t for t in lines if t.task == DENSE.token],
                                   "grounding": [t for t in lines if t.task == GROUNDING.token]}
    return TaskMix(pools, resolve_mix(config.task_mix, {name: len(pool) for name, pool in pools.items()}))


class _Run:
    """The bookkeeping around the trainer: steps, epochs, budgets, checkpoints, validation, the run directory."""

    def __init__(self, trainer: LoraTrainer, mix: TaskMix[Any], val: list[Sample], val_set: Dataset | None,
                 run_dir: Path, plan: _Plan, progress: Progress | None) -> None:
        self.trainer, self.mix, self.val, self.val_set = trainer, mix, val, val_set
        self.config = trainer.config
        self.run_dir, self.plan, self.progress = run_dir, plan, progress
        self.checkpoints = Checkpoints(run_dir)
        self.history: list[dict[str, float]] = []
        self.epochs: list[dict[str, Any]] = []
        self.step = 0
        self.stopped: str | None = None
        self.started = time.monotonic()
        self.epoch_losses: list[float] = []
        self.task_losses: dict[str, list[float]] = {}
        trainer.set_schedule(plan.steps)

    def begin(self, fingerprint: dict[str, Any], resume: bool) -> int:
        latest = self.checkpoints.latest() if resume else None
        if resume and latest is not None:
            check_resumable(self.run_dir, fingerprint)
            state = self.checkpoints.load_into(latest, self.trainer.model)
            self.trainer.restore(state)
            self.history, self.epochs, self.step = list(state["history"]), list(state["epochs"]), int(state["step"])
            return self.step
        if self.run_dir.exists() and not resume:
            shutil.rmtree(self.run_dir / CHECKPOINTS, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        trainable, total = trainable_count(self.trainer.model)
        write_json_atomic(self.run_dir / "config.json", {
            "config": self.config.to_json(), "fingerprint": fingerprint, "plan": asdict(self.plan),
            "trainable_parameters": trainable, "total_parameters": total, "device": str(self.trainer.device),
            "amp": str(self.trainer.amp) if self.trainer.amp else None, "started_at": utc_now(),
            "gradient_checkpointing": asdict(self.trainer.checkpointing), "tasks": self.mix.describe()})
        return 0

    def loop(self, start: int) -> None:
        for step in range(start, self.plan.steps):
            epoch = step // self.plan.per_epoch
            self.trainer.unfreeze_for(step, epoch)
            task, items = self.mix.batch(step, self.config.batch_size, self.config.seed)
            rng = np.random.default_rng([self.config.seed, 1, step])
            augment_rng = np.random.default_rng([self.config.seed, 2, step])  # own stream: targets draw as before
            batcher = self.trainer.batcher
            batch = (batcher(items, rng, augment_rng=augment_rng) if task == "od"
                     else batcher.regions(items, rng, augment_rng))
            lr = float(self.trainer.optimizer.param_groups[0]["lr"])  # the rate this step uses, before it moves on
            loss = self.trainer.train_step(batch)
            self._record(step, loss, lr, task)
            if (step + 1) % self.plan.per_epoch == 0 or step + 1 == self.plan.steps:
                self._end_epoch(epoch)
            if (step + 1) % self.config.checkpoint_every == 0 and step + 1 < self.plan.steps:
                self.checkpoints.save(self.step, self.trainer.model, self.trainer.state(
                    self.step, self.history, self.epochs))
            self.stopped = self._over_budget()
            if self.stopped:
                if self.epoch_losses:  # validate what the shortened run learned
                    self._end_epoch(epoch)
                break

    def _record(self, step: int, loss: float, lr: float, task: str) -> None:
        if not math.isfinite(loss):
            raise TrainError(f"training diverged: loss {loss} at step {step} ({task}; lower the learning rate)")
        self.step = step + 1
        self.epoch_losses.append(loss)
        self.task_losses.setdefault(task, []).append(loss)
        if step % self.config.log_every == 0 or self.step == self.plan.steps:
            mixed = {f"loss_{task}": loss} if len(self.mix.cycle) > 1 else {}  # which task this loss was
            self.history.append({"step": float(self.step), "loss": loss, "lr": lr, **mixed})
        if self.progress is not None:
            self.progress(self.step, self.plan.steps, {"loss": loss, "lr": lr})

    def _end_epoch(self, epoch: int) -> None:
        record: dict[str, Any] = {"epoch": epoch + 1, "step": self.step,
                                  "train_loss": float(np.mean(self.epoch_losses)) if self.epoch_losses else None,
                                  "seconds": round(time.monotonic() - self.started, 2)}
        if len(self.mix.cycle) > 1:
            record["train_loss_by_task"] = {task: float(np.mean(v)) for task, v in self.task_losses.items()}
        self.epoch_losses, self.task_losses = [], {}
        if self.val:
            record["val_loss"] = self.trainer.validation_loss(self.val)
            if self.config.eval_map and self.val_set is not None:
                record.update(self._val_map(epoch))
        self.epochs.append(record)

    def _val_map(self, epoch: int) -> dict[str, Any]:
        """Save this epoch's adapter and evaluate it exactly as the detector will run it (the model family's
        torch-eager backend)."""
        from agent.detector.factory import create_detector
        from finetune.evaluate import EvalOptions, evaluate

        folder = self.run_dir / "epochs" / f"epoch-{epoch + 1:03d}"
        adapter = save_adapter(self.trainer.model, folder / "adapter")
        detector = create_detector("torch-eager", self.trainer.model_dir, adapter, device=str(self.trainer.device))
        assert self.val_set is not None
        report = evaluate(detector, self.val_set, folder / "eval", None,
                          EvalOptions(batch_size=self.config.eval_batch_size, annotated_frames=0, plots=False))
        return {"map": report.map, "map50": report.map50, "per_class": report.per_class}

    def _over_budget(self) -> str | None:
        cfg = self.config
        if cfg.max_seconds is not None and time.monotonic() - self.started > cfg.max_seconds:
            return f"time budget of {cfg.max_seconds:g} s reached at step {self.step} of {self.plan.steps}"
        if cfg.max_memory_mb is not None and peak_memory_mb(self.trainer.device) > cfg.max_memory_mb:
            return (f"memory budget of {cfg.max_memory_mb:g} MiB exceeded (peak "
                    f"{peak_memory_mb(self.trainer.device):.0f} MiB) at step {self.step} of {self.plan.steps}")
        return None

    def summary_metrics(self) -> dict[str, Any]:
        last = self.epochs[-1] if self.epochs else {}
        metrics = {"steps": self.step, "planned_steps": self.plan.steps, "train_loss": last.get("train_loss"),
                   "final_loss": self.history[-1]["loss"] if self.history else None}
        metrics.update({f"val_{k}": last[k] for k in ("loss", "map", "map50") if k in last})
        if self.stopped:
            metrics["stopped"] = self.stopped
        return metrics

    def finish(self, manifest: dict[str, Any]) -> None:
        from finetune.plots import plot_training

        metrics = {"history": self.history, "epochs": self.epochs, "summary": manifest["metrics"],
                   "peak_memory_mb": round(peak_memory_mb(self.trainer.device), 1),
                   "seconds": round(time.monotonic() - self.started, 2)}
        write_json_atomic(self.run_dir / "metrics.json", metrics)
        plot_training(self.history, self.epochs, self.run_dir / "training.png")
