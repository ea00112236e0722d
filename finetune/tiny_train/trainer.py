"""The tiny recipe's training loop: model + auxiliary heads + AdamW with warm-up/cosine, and `train_tiny`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agent.detector.loc import LOC_BINS
from agent.modeldir import MissingClassList, read_class_names, write_class_names
from finetune.losses import sequence_loss, soft_loc_targets
from finetune.tiny_train.aligned_init import align_position_init
from finetune.tiny_train.batches import TASK, TinyBatch, TinyBatcher, TrainFrame, grid_size
from finetune.tiny_train.heads import AuxHeads, cell_losses

Progress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TinyTrainConfig:
    """Hyper-parameters of the recipe; the defaults are the measured recipe of docs/tiny-model-recipe.md."""

    steps: int = 600
    batch_size: int = 16
    seed: int = 0
    lr: float = 1e-3
    vision_lr_scale: float = 1.0
    warmup_steps: int = 30
    weight_decay: float = 0.01
    loc_sigma: float = 4.0  # std of the Gaussian soft target over <loc> bins, in bins
    loc_sigma_final: float | None = None  # anneal sigma linearly to this by the last step (wide early, sharp late)
    cell_class_weight: float = 1.0
    background_weight: float = 0.2
    cell_box_weight: float = 1.0
    flip: bool = True
    grad_clip: float = 1.0
    aligned_init: bool = False  # re-initialise position codes first (only for a freshly built model)
    threads: int | None = None


@dataclass
class TrainResult:
    """What a training run did: steps, seconds, the last losses, and a loss history every `log_every` steps."""

    steps: int
    seconds: float
    final: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


class TinyTrainer:
    """Holds the model, its processor and the auxiliary heads for one training run."""

    def __init__(self, model_dir: Path, config: TinyTrainConfig) -> None:
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        self.model_dir = Path(model_dir)
        self.config = config
        self.processor = AutoProcessor.from_pretrained(self.model_dir)
        self.model = Florence2ForConditionalGeneration.from_pretrained(self.model_dir, dtype=torch.float32)
        self.class_names = model_class_names(self.model_dir)
        tokenizer = self.processor.tokenizer
        self.loc_ids = torch.tensor(tokenizer.convert_tokens_to_ids([f"<loc_{i}>" for i in range(LOC_BINS)]))
        if not bool((self.loc_ids[1:] > self.loc_ids[:-1]).all()):
            raise ValueError(f"{self.model_dir}: <loc_N> token ids are not increasing with N")
        self.grid = grid_size(self.processor)
        d_model = int(self.model.config.text_config.d_model)  # type: ignore[union-attr]
        if config.aligned_init:
            align_position_init(self.model, self.loc_ids, self.grid)
        torch.manual_seed(config.seed)
        self.heads = AuxHeads(d_model, len(self.class_names))
        self.soft = soft_loc_targets(config.loc_sigma)
        self.batcher = TinyBatcher(self.processor, self.grid, config.flip)
        self.prompt = self.processor(text=[TASK], images=[np.zeros((8, 8, 3), np.uint8)], return_tensors="pt")

    def parameter_groups(self) -> list[dict[str, Any]]:
        lr, cfg = self.config.lr, self.config
        vision = list(self.model.model.vision_tower.parameters())
        vision_ids = {id(p) for p in vision}
        rest = [p for p in self.model.parameters() if id(p) not in vision_ids]
        return [
            {"params": vision, "lr": lr * cfg.vision_lr_scale},
            {"params": rest, "lr": lr},
            {"params": list(self.heads.parameters()), "lr": lr},
        ]

    def losses(self, batch: TinyBatch) -> dict[str, torch.Tensor]:
        size = batch.pixel_values.shape[0]
        input_ids = self.prompt.input_ids.expand(size, -1)
        out = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                         pixel_values=batch.pixel_values, labels=batch.labels)
        cells = out.encoder_last_hidden_state[:, : self.grid * self.grid]
        loc_embeddings = self.model.get_input_embeddings().weight[self.loc_ids]  # type: ignore[index]
        lm = sequence_loss(out.logits, batch.labels, self.loc_ids, self.soft)
        cls, box = cell_losses(self.heads, cells, batch, loc_embeddings, self.soft, self.config.background_weight)
        total = lm + self.config.cell_class_weight * cls + self.config.cell_box_weight * box
        return {"loss": total, "lm": lm, "cell_class": cls, "cell_box": box}

    def fit(self, frames: Sequence[TrainFrame], progress: Progress | None = None, log_every: int = 25
            ) -> TrainResult:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        optimizer = torch.optim.AdamW(self.parameter_groups(), weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps))
        self.model.train()
        history: list[dict[str, float]] = []
        start = time.perf_counter()
        values: dict[str, float] = {}
        for step in range(cfg.steps):
            self.anneal_sigma(step)
            chosen = rng.choice(len(frames), size=min(cfg.batch_size, len(frames)), replace=False)
            losses = self.losses(self.batcher([frames[i] for i in chosen], rng))
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.trainable(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            values = {k: float(v.detach()) for k, v in losses.items()}
            if step % log_every == 0 or step == cfg.steps - 1:
                history.append({"step": float(step), **values})
            if progress is not None:
                progress(step + 1, cfg.steps, values)
        self.model.eval()
        return TrainResult(cfg.steps, time.perf_counter() - start, values, history, asdict(cfg))

    def anneal_sigma(self, step: int, every: int = 50) -> None:
        """Narrow the `<loc>` soft targets from `loc_sigma` to `loc_sigma_final` (rebuilt every `every` steps)."""
        cfg = self.config
        if cfg.loc_sigma_final is None or step % every:
            return
        fraction = step / max(1, cfg.steps - 1)
        self.soft = soft_loc_targets(cfg.loc_sigma + (cfg.loc_sigma_final - cfg.loc_sigma) * fraction)

    def trainable(self) -> list[nn.Parameter]:
        return list(self.model.parameters()) + list(self.heads.parameters())

    def save(self, out_dir: Path | None = None) -> Path:
        """Write the trained model (safetensors) and its processor; the auxiliary heads are not part of it."""
        target = Path(out_dir) if out_dir is not None else self.model_dir
        target.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(target, safe_serialization=True)
        self.processor.save_pretrained(target)
        write_class_names(target, self.class_names)
        return target


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def model_class_names(model_dir: Path) -> tuple[str, ...]:
    """The model's `classes.txt`; a missing one is a FileNotFoundError that says how tiny models get theirs."""
    try:
        return read_class_names(model_dir)
    except MissingClassList as exc:
        raise FileNotFoundError(f"{exc.path} does not exist: build the model with `edge-inspect model tiny`") from None


def train_tiny(model_dir: Path, frames: Sequence[TrainFrame], config: TinyTrainConfig | None = None,
               progress: Progress | None = None, out_dir: Path | None = None) -> TrainResult:
    """Train the tiny model in `model_dir` on `frames` and save it back (or into `out_dir`)."""
    config = config or TinyTrainConfig()
    if not frames:
        raise ValueError("train_tiny needs at least one frame")
    if config.threads:
        torch.set_num_threads(config.threads)
    trainer = TinyTrainer(model_dir, config)
    wrong = [i for i, f in enumerate(frames) if f.detections.class_names != trainer.class_names]
    if wrong:
        raise ValueError(f"frames {wrong[:5]} (by position) have classes {frames[wrong[0]].detections.class_names}, "
                         f"the model {trainer.class_names}")
    result = trainer.fit(frames, progress)
    trainer.save(out_dir)
    return result
