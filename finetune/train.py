"""LoRA fine-tuning of Florence-2 on a detection data set: the loop, its checkpoints and its run directory.

`train_lora(model_dir, train_set, out_dir, config, val_set=...)` wraps the base model with fresh LoRA adapters (or
the adapter it starts from, for incremental runs), trains with AdamW + warm-up/cosine schedule, validates every
epoch (teacher-forced loss, and COCO mAP through `finetune.evaluate` on the saved adapter), and writes:

- `out_dir/`: the adapter in PEFT layout (`adapter_config.json`, `adapter_model.safetensors`) + `manifest.json`
  (version, parent, base identity, data hash, metrics, thresholds, created_at), ready for `ModelStore.add_adapter`;
- `run_dir/` (default `<out_dir>.run`): `config.json`, `metrics.json`, `training.png` (loss and mAP curves) and
  `checkpoints/`, rewritten every `checkpoint_every` steps so that a killed run continues with `resume=True`.

A checkpoint is a folder `checkpoints/step-NNNNNNN/` (adapter safetensors + `state.pt` with optimizer, scheduler,
scaler, step and RNG states, read back with `torch.load(weights_only=True)`, which refuses arbitrary pickles) made
visible by an atomic rewrite of `checkpoints/latest.json`; a folder the pointer does not name is an interrupted write.
Batches are a pure function of (seed, step), so a resumed run sees exactly the batches the killed run would have.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from agent.detections import LOC_BINS, Detections
from agent.detector.base import DetectorError
from agent.detector.florence2 import pick_device as detector_device
from agent.store import base_identity, utc_now, weights_digests, write_json_atomic
from finetune.data.dataset import Dataset, Sample
from finetune.lora import (
    LoraSettings,
    add_lora,
    enable_checkpointing,
    load_lora,
    lora_parameters,
    save_adapter,
    set_vision_trainable,
    trainable_count,
)

TASKS: tuple[str, ...] = ("<OD>", "<DENSE_REGION_CAPTION>", "<CAPTION_TO_PHRASE_GROUNDING>")
GROUNDING = "<CAPTION_TO_PHRASE_GROUNDING>"
CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
Progress = Callable[[int, int, dict[str, float]], None]


class TrainError(ValueError):
    """A training request that cannot run; the message names the setting, file or value at fault."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and budgets of one LoRA run (defaults suit a few hundred frames on a Jetson/RTX box)."""

    epochs: int = 3
    max_steps: int | None = None  # overrides epochs when given
    batch_size: int = 4
    lr: float = 2e-4
    vision_lr_scale: float = 0.1  # vision-tower LoRA learns slower (stage 2 of staged unfreezing)
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    lora: LoraSettings = field(default_factory=LoraSettings)
    gradient_checkpointing: bool = True
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16
    unfreeze_vision_epoch: int | None = None  # staged unfreezing: vision LoRA frozen before this epoch (0-based)
    shuffle_boxes: bool = False  # suffix order augmentation: boxes in random order instead of reading order
    tasks: tuple[str, ...] = ("<OD>",)
    loc_sigma: float = 0.0  # > 0: Gaussian soft targets over neighbouring <loc> bins
    checkpoint_every: int = 50
    eval_map: bool = True
    eval_batch_size: int = 4
    max_seconds: float | None = None
    max_memory_mb: float | None = None
    device: str = "auto"
    log_every: int = 5

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "checkpoint_every": self.checkpoint_every >= 1, "warmup_steps": self.warmup_steps >= 0,
                  "max_steps": self.max_steps is None or self.max_steps >= 1, "log_every": self.log_every >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TrainError(f"{bad[0]}={getattr(self, bad[0])!r} is out of range")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise TrainError(f"tasks {list(self.tasks)}: each must be one of {list(TASKS)}")
        if self.amp not in ("auto", "off", "bf16", "fp16"):
            raise TrainError(f"amp={self.amp!r}: must be auto, off, bf16 or fp16")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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


# ----- data ---------------------------------------------------------------------------------------------------------
def dataset_hash(dataset: Dataset) -> str:
    """sha256 over the class list and every sample's image bytes and boxes (order-independent)."""
    rows = []
    for sample in dataset.samples:
        image = hashlib.sha256(sample.image.read_bytes()).hexdigest()
        rows.append(f"{image} {sample.detections.sorted_raster().to_loc_text()}")
    digest = hashlib.sha256("\n".join(dataset.class_names).encode())
    for row in sorted(rows):
        digest.update(f"\n{row}".encode())
    return "sha256:" + digest.hexdigest()


def align_classes(dataset: Dataset, class_names: Sequence[str], what: str = "data set") -> list[Sample]:
    """Samples re-indexed into the model's class list; a class the model lacks is an error naming it."""
    missing = [name for name in dataset.class_names if name not in class_names]
    if missing:
        raise TrainError(f"{what} class(es) {missing} are unknown to the model (model classes: {list(class_names)})")
    return [Sample(s.image, Detections.from_labels(s.detections.labels, s.detections.xyxy, class_names,
                                                   s.image_size)) for s in dataset.samples]


def target_for(task: str, dets: Detections, rng: np.random.Generator, shuffle: bool) -> tuple[str, str]:
    """(prompt, target text) of one sample for `task`; grounding asks for one class present on the frame."""
    ordered = dets[rng.permutation(len(dets))] if shuffle and len(dets) > 1 else dets.sorted_raster()
    if task != GROUNDING or not len(dets):
        return ("<OD>" if task == GROUNDING else task), ordered.to_loc_text()
    label = str(rng.choice(sorted(set(dets.labels))))
    return task + label, ordered[np.asarray(ordered.labels) == label].to_loc_text()


class Batcher:
    """Samples -> model inputs: pixels (as the detector preprocesses), prompt ids and -100-padded labels."""

    def __init__(self, processor: Any, config: TrainConfig) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        size = processor.image_processor.size
        self.size = (int(size["width"]), int(size["height"]))
        self.config = config
        self._prompts: dict[str, torch.Tensor] = {}

    def prompt_ids(self, prompt: str) -> torch.Tensor:
        """Florence's processor expands the task token and inserts the image tokens; cached per prompt."""
        if prompt not in self._prompts:
            dummy = np.zeros((8, 8, 3), np.uint8)
            self._prompts[prompt] = self.processor(text=[prompt], images=[dummy], return_tensors="pt").input_ids[0]
        return self._prompts[prompt]

    def __call__(self, samples: Sequence[Sample], rng: np.random.Generator, task: str | None = None
                 ) -> dict[str, torch.Tensor]:
        from agent.detector.florence2 import preprocess_frames
        from agent.imageio import read_image

        frames = [read_image(s.image) for s in samples]
        pixels = torch.from_numpy(preprocess_frames(frames, self.processor.image_processor, self.size))
        tasks = [task or str(rng.choice(list(self.config.tasks))) for _ in samples]
        pairs = [target_for(t, s.detections, rng, self.config.shuffle_boxes) for t, s in zip(tasks, samples)]
        input_ids, attention = pad_prompts([self.prompt_ids(p) for p, _ in pairs], int(self.tokenizer.pad_token_id))
        return {"pixel_values": pixels, "input_ids": input_ids, "attention_mask": attention,
                "labels": self.labels([t for _, t in pairs])}

    def labels(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        return tokens.input_ids.masked_fill(tokens.attention_mask == 0, -100)


def pad_prompts(prompts: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id tensors into (ids, attention mask)."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = 1
    return ids, mask


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> npt.NDArray[np.int64]:
    """Indices of the samples in `step`: a fresh permutation per epoch, a pure function of (seed, step)."""
    per_epoch = math.ceil(n / batch_size)
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[index * batch_size : (index + 1) * batch_size]


# ----- schedule, precision, memory ------------------------------------------------------------------------------------
def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def amp_dtype(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the GPU supports it, else fp16; None on CPU or with amp off."""
    if requested == "off" or (requested == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise TrainError(f"amp={requested!r} needs a CUDA device (training on {device})")
    if requested == "fp16" or (requested == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch on CUDA; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def pick_device(requested: str) -> torch.device:
    """The detector's device rule (auto = cuda when available), reported as a training error."""
    try:
        return detector_device(requested)
    except DetectorError as exc:
        raise TrainError(str(exc)) from None


# ----- checkpoints --------------------------------------------------------------------------------------------------
class Checkpoints:
    """`run_dir/checkpoints/`: the latest resumable state, switched atomically through `latest.json`."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / CHECKPOINTS
        self.pointer = self.root / LATEST

    def save(self, step: int, model: Any, state: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:07d}"
        tmp = self.root / f".step-{step:07d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_adapter(model, tmp)
        torch.save(state, tmp / "state.pt")
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        write_json_atomic(self.pointer, {"step": step, "dir": final.name, "saved_at": utc_now()})
        self._remove_stale(keep=final.name)
        return final

    def _remove_stale(self, keep: str) -> None:
        for path in self.root.iterdir():
            if path.is_dir() and path.name != keep:
                shutil.rmtree(path, ignore_errors=True)

    def latest(self) -> Path | None:
        if not self.pointer.is_file():
            return None
        directory = self.root / str(json.loads(self.pointer.read_text())["dir"])
        if not (directory / "state.pt").is_file():
            raise TrainError(f"checkpoint pointer {self.pointer} names {directory}, which is incomplete")
        return directory

    def load_into(self, directory: Path, model: Any) -> dict[str, Any]:
        """Copy the checkpoint's LoRA weights into `model`; return the training state (weights-only unpickling)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(directory / "adapter_model.safetensors")))
        state: dict[str, Any] = torch.load(directory / "state.pt", weights_only=True)
        return state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----- the trainer --------------------------------------------------------------------------------------------------
class LoraTrainer:
    """One run: model + adapter + optimizer on a device, stepping through deterministic batches."""

    def __init__(self, model_dir: Path, config: TrainConfig, init_adapter: Path | None = None) -> None:
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        self.model_dir = Path(model_dir)
        self.config = config
        self.device = pick_device(config.device)
        self.amp = amp_dtype(config.amp, self.device)
        torch.manual_seed(config.seed)
        self.processor = AutoProcessor.from_pretrained(self.model_dir)
        base = Florence2ForConditionalGeneration.from_pretrained(self.model_dir, dtype=torch.float32)
        self.model = load_lora(base, init_adapter) if init_adapter is not None else add_lora(base, config.lora)
        self.staged = config.unfreeze_vision_epoch is not None
        self.model.to(self.device)
        enable_checkpointing(self.model, config.gradient_checkpointing)
        self.batcher = Batcher(self.processor, config)
        self.loc_ids = torch.tensor(self.processor.tokenizer.convert_tokens_to_ids(
            [f"<loc_{i}>" for i in range(LOC_BINS)]), device=self.device)
        self.soft = self._soft_targets()
        self.optimizer = self._optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp is torch.float16)
        self.schedule: torch.optim.lr_scheduler.LambdaLR | None = None

    def _soft_targets(self) -> torch.Tensor | None:
        if self.config.loc_sigma <= 0:
            return None
        from finetune.tiny_train import soft_loc_targets

        return soft_loc_targets(self.config.loc_sigma).to(self.device)

    def _optimizer(self) -> torch.optim.Optimizer:
        text = [p for _, p in lora_parameters(self.model, vision=False) if p.requires_grad]
        vision = [p for _, p in lora_parameters(self.model, vision=True)]
        if not text and not vision:
            raise TrainError("the adapter has no trainable LoRA weights")
        groups = [{"params": text, "lr": self.config.lr}]
        if vision:
            groups.append({"params": vision, "lr": self.config.lr * self.config.vision_lr_scale})
        return torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)

    def set_schedule(self, total_steps: int) -> None:
        warmup = min(self.config.warmup_steps, max(total_steps - 1, 0))
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup, total_steps))

    def vision_stage(self, epoch: int) -> None:
        """Staged unfreezing: vision-tower LoRA frozen before `unfreeze_vision_epoch`, trainable from it."""
        if self.staged:
            set_vision_trainable(self.model, epoch >= int(self.config.unfreeze_vision_epoch or 0))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        autocast = (torch.autocast("cuda", dtype=self.amp) if self.amp is not None else contextlib.nullcontext())
        with autocast:
            out = self.model(**batch, use_cache=False)
        if self.soft is None:
            return out.loss.float()
        from finetune.tiny_train import sequence_loss

        return sequence_loss(out.logits, batch["labels"], self.loc_ids, self.soft)

    def train_step(self, batch: dict[str, torch.Tensor]) -> float:
        self.model.train()
        loss = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        assert self.schedule is not None
        self.schedule.step()
        return float(loss.detach())

    def validation_loss(self, samples: Sequence[Sample]) -> float:
        """Teacher-forced `<OD>` loss over `samples` (boxes in reading order, no dropout)."""
        self.model.eval()
        rng = np.random.default_rng(0)
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(samples), self.config.batch_size):
                chunk = samples[start : start + self.config.batch_size]
                total += float(self.loss(self.batcher(chunk, rng, task="<OD>"))) * len(chunk)
                count += len(chunk)
        return total / max(count, 1)

    def state(self, step: int, history: list[dict[str, float]], epochs: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.schedule is not None
        return {"step": step, "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state(), "history": history, "epochs": epochs}

    def restore(self, state: dict[str, Any]) -> None:
        assert self.schedule is not None
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])


# ----- the run ------------------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    steps: int
    per_epoch: int
    epochs: int


def plan(n_samples: int, config: TrainConfig) -> _Plan:
    per_epoch = math.ceil(n_samples / config.batch_size)
    steps = config.max_steps if config.max_steps is not None else config.epochs * per_epoch
    return _Plan(steps, per_epoch, math.ceil(steps / per_epoch))


def fingerprint(model_dir: Path, data_hash: str, config: TrainConfig, init_adapter: Path | None) -> dict[str, Any]:
    """What must not change between a killed run and its resumption."""
    keep = ("batch_size", "lr", "seed", "lora", "tasks", "shuffle_boxes", "loc_sigma", "unfreeze_vision_epoch",
            "vision_lr_scale", "warmup_steps", "weight_decay", "max_steps", "epochs")
    settings = {k: v for k, v in config.to_json().items() if k in keep}
    return {"base": base_identity(model_dir), "data_hash": data_hash, "settings": settings,
            "init_adapter": str(init_adapter) if init_adapter else None}


def check_resumable(run_dir: Path, expected: dict[str, Any]) -> None:
    saved = json.loads((run_dir / "config.json").read_text()).get("fingerprint", {})
    expected = json.loads(json.dumps(expected))  # compare as stored: tuples come back from JSON as lists
    differ = sorted(k for k in expected if saved.get(k) != expected[k])
    if differ:
        raise TrainError(f"cannot resume {run_dir}: {differ} differ from the interrupted run "
                         f"(was {[saved.get(k) for k in differ]})")


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
) -> TrainResult:
    """Train a LoRA adapter; see the module docstring for what lands in `out_dir` and `run_dir`."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    run_dir = Path(run_dir) if run_dir is not None else out_dir.with_name(out_dir.name + ".run")
    if not train_set.samples:
        raise TrainError("the training set has no samples")
    if config.unfreeze_vision_epoch is not None and not config.lora.vision and init_adapter is None:
        config = replace(config, lora=replace(config.lora, vision=True))  # staged unfreezing needs vision LoRA
    trainer = LoraTrainer(model_dir, config, init_adapter)
    class_names = read_model_classes(model_dir)
    samples = align_classes(train_set, class_names, "training set")
    val = align_classes(val_set, class_names, "validation set") if val_set is not None and val_set.samples else []
    data_hash = dataset_hash(train_set)
    run = _Run(trainer, samples, val, val_set, run_dir, plan(len(samples), config), progress)
    start = run.begin(fingerprint(model_dir, data_hash, config, init_adapter), resume)
    run.loop(start)
    parent = adapter_version(init_adapter)
    manifest = write_adapter(trainer.model, out_dir, model_dir, data_hash, parent, run.summary_metrics())
    run.finish(manifest)
    return TrainResult(out_dir, run_dir, run.step, start or None, run.stopped, run.history, run.epochs, manifest)


class _Run:
    """The bookkeeping around the trainer: steps, epochs, budgets, checkpoints, validation, the run directory."""

    def __init__(self, trainer: LoraTrainer, samples: list[Sample], val: list[Sample], val_set: Dataset | None,
                 run_dir: Path, plan: _Plan, progress: Progress | None) -> None:
        self.trainer, self.samples, self.val, self.val_set = trainer, samples, val, val_set
        self.config = trainer.config
        self.run_dir, self.plan, self.progress = run_dir, plan, progress
        self.checkpoints = Checkpoints(run_dir)
        self.history: list[dict[str, float]] = []
        self.epochs: list[dict[str, Any]] = []
        self.step = 0
        self.stopped: str | None = None
        self.started = time.monotonic()
        self.epoch_losses: list[float] = []
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
            "amp": str(self.trainer.amp) if self.trainer.amp else None, "started_at": utc_now()})
        return 0

    def loop(self, start: int) -> None:
        for step in range(start, self.plan.steps):
            epoch = step // self.plan.per_epoch
            self.trainer.vision_stage(epoch)
            indices = batch_indices(len(self.samples), self.config.batch_size, self.config.seed, step)
            rng = np.random.default_rng([self.config.seed, 1, step])
            loss = self.trainer.train_step(self.trainer.batcher([self.samples[i] for i in indices], rng))
            self._record(step, loss)
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

    def _record(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrainError(f"training diverged: loss {loss} at step {step} (lower the learning rate)")
        self.step = step + 1
        self.epoch_losses.append(loss)
        lr = float(self.trainer.optimizer.param_groups[0]["lr"])
        if step % self.config.log_every == 0 or self.step == self.plan.steps:
            self.history.append({"step": float(self.step), "loss": loss, "lr": lr})
        if self.progress is not None:
            self.progress(self.step, self.plan.steps, {"loss": loss, "lr": lr})

    def _end_epoch(self, epoch: int) -> None:
        record: dict[str, Any] = {"epoch": epoch + 1, "step": self.step,
                                  "train_loss": float(np.mean(self.epoch_losses)) if self.epoch_losses else None,
                                  "seconds": round(time.monotonic() - self.started, 2)}
        self.epoch_losses = []
        if self.val:
            record["val_loss"] = self.trainer.validation_loss(self.val)
            if self.config.eval_map and self.val_set is not None:
                record.update(self._val_map(epoch))
        self.epochs.append(record)

    def _val_map(self, epoch: int) -> dict[str, Any]:
        """Save this epoch's adapter and evaluate it exactly as the detector will run it."""
        from agent.detector.florence2 import DetectorOptions, Florence2Detector
        from finetune.evaluate import EvalOptions, evaluate

        folder = self.run_dir / "epochs" / f"epoch-{epoch + 1:03d}"
        adapter = save_adapter(self.trainer.model, folder / "adapter")
        detector = Florence2Detector(self.trainer.model_dir, adapter,
                                     options=DetectorOptions(device=str(self.trainer.device)))
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
        metrics = {"history": self.history, "epochs": self.epochs, "summary": manifest["metrics"],
                   "peak_memory_mb": round(peak_memory_mb(self.trainer.device), 1),
                   "seconds": round(time.monotonic() - self.started, 2)}
        write_json_atomic(self.run_dir / "metrics.json", metrics)
        plot_training(self.history, self.epochs, self.run_dir / "training.png")


# ----- outputs ------------------------------------------------------------------------------------------------------
def read_model_classes(model_dir: Path) -> tuple[str, ...]:
    path = Path(model_dir) / "classes.txt"
    if not path.is_file():
        raise TrainError(f"{path} does not exist: the model directory must list its classes, one per line")
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def adapter_version(adapter: Path | None) -> str | None:
    """The version an adapter's manifest records (the parent of what we train from it)."""
    if adapter is None:
        return None
    manifest = Path(adapter) / "manifest.json"
    if manifest.is_file():
        with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
            return str(json.loads(manifest.read_text())["version"])
    return Path(adapter).name


def write_adapter(model: Any, out_dir: Path, model_dir: Path, data_hash: str, parent: str | None,
                  metrics: dict[str, Any], thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """The adapter (PEFT layout, safetensors) + `manifest.json` in the shape `ModelStore.add_adapter` reads."""
    if out_dir.exists():
        for stale in ("adapter_model.safetensors", "adapter_config.json", "manifest.json"):
            (out_dir / stale).unlink(missing_ok=True)
    save_adapter(model, out_dir)
    created = datetime.now(timezone.utc)
    manifest = {"version": f"run-{created.strftime('%Y%m%dT%H%M%SZ')}", "parent": parent,
                "base": base_identity(model_dir), "data_hash": data_hash, "metrics": metrics,
                "thresholds": dict(thresholds or {}), "weights": weights_digests(out_dir),
                "created_at": utc_now()}
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def plot_training(history: list[dict[str, float]], epochs: list[dict[str, Any]], path: Path) -> Path:
    """Training loss per step, validation loss and mAP per epoch (right axis)."""
    from finetune.plots import plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss", color="tab:blue")
    val = [(e["step"], e["val_loss"]) for e in epochs if e.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), "o-", label="val loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    maps = [(e["step"], e["map"]) for e in epochs if e.get("map") is not None]
    if maps:
        right = ax.twinx()
        right.plot(*zip(*maps), "s--", label="val mAP", color="tab:green")
        right.set_ylim(0, 1)
        right.set_ylabel("mAP@[.5:.95]")
        right.legend(loc="upper center", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("LoRA fine-tuning")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
