"""`edge-inspect finetune` on a Mask R-CNN model directory: a full fine-tune, written as a new model directory.

Every weight trains (AdamW). The recipe: linear warm-up then cosine decay (`finetune.train.schedule.lr_factor`),
gradient clipping to `max_grad_norm`, AMP on CUDA (bf16 where supported, else fp16 with loss scaling;
`finetune.train.trainer.amp_dtype`), multi-scale training (torchvision's transform picks one of `scales` as the
short side of each batch; the model keeps serving at its `min_size`), optional horizontal flips, and a time budget.
A progress line every `log_every` steps: step, losses, learning rate, seconds.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.detector.base import DetectorError
from agent.detector.florence2 import pick_device
from agent.detector.maskrcnn.config import MaskRcnnConfig, read_config
from agent.detector.maskrcnn.model import build_model, load_weights
from agent.modeldir import MissingClassList, read_class_names
from finetune.data.dataset import Dataset, Sample
from finetune.family_requests import FinetuneRequest
from finetune.maskrcnn.tiny import write_model_dir
from finetune.train.config import TrainError
from finetune.train.schedule import lr_factor
from finetune.train.trainer import amp_dtype

SCALE_STEPS = (0.8, 0.9, 1.0, 1.1, 1.2)  # default multi-scale short sides, as fractions of the model's min_size
HISTORY = "training.json"


def default_scales(min_size: int) -> tuple[int, ...]:
    """Short sides around `min_size`, multiples of 32 (the FPN's coarsest stride), without repeats."""
    return tuple(sorted({max(32, round(min_size * f / 32) * 32) for f in SCALE_STEPS}))


def training_target(sample: Sample, class_names: Sequence[str], flip: bool) -> tuple[torch.Tensor, dict[str, Any]]:
    """One frame as torchvision wants it: RGB float C x H x W, and boxes / labels (1..K) / uint8 masks."""
    from agent.imageio import read_image

    dets = sample.detections
    if dets.mask is None and len(dets):
        raise TrainError(f"{sample.image}: {len(dets)} box(es) without instance masks; Mask R-CNN trains on masks "
                         "(COCO segmentation, or a PNG mask set: docs/data.md)")
    index = {name: i + 1 for i, name in enumerate(class_names)}
    image = read_image(sample.image)[:, :, ::-1]
    width = image.shape[1]
    masks = dets.mask if dets.mask is not None else np.zeros((0, *image.shape[:2]), dtype=bool)
    boxes = dets.xyxy.copy()
    if flip:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    return tensor, {"boxes": torch.from_numpy(boxes).float().reshape(-1, 4),
                    "labels": torch.tensor([index[label] for label in dets.labels], dtype=torch.int64),
                    "masks": torch.from_numpy(np.ascontiguousarray(masks)).to(torch.uint8)}


def check_classes(dataset: Dataset, class_names: Sequence[str], role: str) -> None:
    missing = [name for name in dataset.class_names if name not in class_names]
    if missing:
        raise TrainError(f"{role} set class(es) {missing} are unknown to the model (classes: {list(class_names)})")


def batches(count: int, batch_size: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """Endless shuffled epochs of sample indices, `batch_size` at a time (the last of an epoch may be shorter)."""
    while True:
        order = rng.permutation(count)
        for start in range(0, count, batch_size):
            yield order[start:start + batch_size].tolist()


class MaskRcnnTrainer:
    """The network of a model directory, trained in place by `run`; `save` writes the result as a model directory."""

    def __init__(self, request: FinetuneRequest) -> None:
        self.request = request
        try:
            self.config: MaskRcnnConfig = read_config(request.model)
            self.class_names = read_class_names(request.model)
            self.device = pick_device(request.device)
            self.model = build_model(self.config)
            load_weights(self.model, Path(request.model) / "model.safetensors")
        except (DetectorError, MissingClassList) as exc:
            raise TrainError(str(exc)) from None
        check_classes(request.train_set, self.class_names, "training")
        if not len(request.train_set):
            raise TrainError("the training set has no images")
        self.model.to(self.device)
        self.amp = amp_dtype(request.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp is torch.float16)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=request.lr, weight_decay=1e-4)
        self.history: list[dict[str, float]] = []

    @property
    def total_steps(self) -> int:
        per_epoch = math.ceil(len(self.request.train_set) / self.request.batch_size)
        return self.request.max_steps or self.request.epochs * per_epoch

    def _multi_scale(self, on: bool) -> None:
        """torchvision's transform draws the short side of each training batch from a tuple of sizes."""
        scales = self.request.scales or default_scales(self.config.min_size)
        if any(s < 32 for s in scales):
            raise TrainError(f"scales {list(scales)}: every short side must be at least 32 pixels")
        ratio = self.config.max_size / self.config.min_size
        self.model.transform.min_size = tuple(scales) if on else (self.config.min_size,)
        self.model.transform.max_size = round(max(scales) * ratio) if on else self.config.max_size

    def step(self, samples: list[Sample], step: int, rng: np.random.Generator) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = self.request.lr * lr_factor(step, self.request.warmup_steps, self.total_steps)
        pairs = [training_target(s, self.class_names, self.request.augment and rng.random() < 0.5) for s in samples]
        images = [image.to(self.device) for image, _ in pairs]
        targets = [{k: v.to(self.device) for k, v in target.items()} for _, target in pairs]
        autocast = torch.autocast("cuda", dtype=self.amp) if self.amp is not None else contextlib.nullcontext()
        with autocast:
            losses = self.model(images, targets)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.request.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()},
                "lr": self.optimizer.param_groups[0]["lr"]}

    def run(self) -> str:
        """Train for the planned steps or until the time budget; returns why it stopped."""
        request = self.request
        rng = np.random.default_rng(request.seed)
        torch.manual_seed(request.seed)
        order = batches(len(request.train_set), request.batch_size, rng)
        self.model.train()
        self._multi_scale(True)
        started = time.monotonic()
        stopped = "steps"
        try:
            for step in range(self.total_steps):
                if request.max_seconds is not None and time.monotonic() - started > request.max_seconds:
                    stopped = "time budget"
                    break
                values = self.step([request.train_set.samples[i] for i in next(order)], step, rng)
                self.history.append({"step": step + 1, **values, "seconds": time.monotonic() - started})
                self._report(step + 1)
        finally:
            self._multi_scale(False)
            self.model.eval()
        return stopped

    def _report(self, step: int) -> None:
        if self.request.progress is None or (step % self.request.log_every and step != self.total_steps):
            return
        last = self.history[-1]
        parts = " ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in last.items() if k.startswith("loss_"))
        self.request.progress(f"step {step}/{self.total_steps} loss {last['loss']:.4f} ({parts}) "
                              f"lr {last['lr']:.2e} {last['seconds']:.1f} s")

    def save(self, stopped: str) -> Path:
        out = write_model_dir(self.model, self.config, self.class_names, Path(self.request.out))
        record = {"base_model": str(self.request.model), "steps": len(self.history), "stopped": stopped,
                  "scales": list(self.request.scales or default_scales(self.config.min_size)),
                  "amp": None if self.amp is None else str(self.amp).removeprefix("torch."),
                  "history": self.history}
        (out / HISTORY).write_text(json.dumps(record, indent=1) + "\n")
        return out


def finetune_maskrcnn(request: FinetuneRequest) -> dict[str, Any]:
    """Fine-tune, write the model directory, and (with a validation set) its bbox and segm mAP."""
    trainer = MaskRcnnTrainer(request)
    stopped = trainer.run()
    out = trainer.save(stopped)
    summary: dict[str, Any] = {"model": str(out), "steps": len(trainer.history), "stopped": stopped,
                               "final_loss": trainer.history[-1]["loss"] if trainer.history else None}
    if request.val_set is not None:
        summary["validation"] = validation_metrics(out, request.val_set, request.device)
    return summary


def validation_metrics(model_dir: Path, val_set: Dataset, device: str) -> dict[str, Any]:
    """bbox and segm mAP of the fine-tuned model on the validation set (`finetune.evaluate`'s scoring)."""
    from agent.detector.maskrcnn.detector import MaskRcnnDetector
    from finetune.evaluate import align_ground_truth, predict
    from finetune.metrics import score_predictions

    detector = MaskRcnnDetector(model_dir, device=device)
    check_classes(val_set, detector.class_names, "validation")
    report = score_predictions(align_ground_truth(val_set, detector.class_names), predict(detector, val_set),
                               detector.class_names)
    metrics = report.to_json()
    return {"map": metrics["map"], "map50": metrics["map50"], "segm": metrics.get("segm")}
