"""Shared pieces of the LoRA and recalibration tests: a tiny base model that already localises, frame folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.capture.synthetic import SyntheticFrame, SyntheticGenerator
from agent.detections import Detections, box_iou
from finetune.data.dataset import Dataset
from finetune.data.synth import write_frames
from finetune.lora import LoraSettings
from finetune.tiny import TinySpec, build_tiny_model
from finetune.tiny_train.trainer import TinyTrainConfig, train_tiny
from finetune.train.config import TrainConfig

CLASSES = ("scratch", "hole", "stain")
SIZE = 64  # 64 px frames, an 8 x 8 image-token grid: small enough to train in seconds on two cores
# LoRA settings that let a few frames be learnt in ~60 steps on the tiny model (rank 16, vision tower included)
FAST_LORA = TrainConfig(max_steps=60, batch_size=4, lr=3e-3, warmup_steps=5, loc_sigma=2.0, eval_map=False,
                        gradient_checkpointing=False, checkpoint_every=1000, log_every=1,
                        lora=LoraSettings(r=16, alpha=32, dropout=0.0, vision=True))


def frames(seed: int, count: int) -> list[SyntheticFrame]:
    return SyntheticGenerator(seed=seed, size=SIZE, max_defects=2, defect_free_fraction=0.0).frames(count)


def localising_base(out: Path) -> Path:
    """A tiny Florence-2 pre-trained (tiny recipe, 150 steps) on frames of seed 7: it localises, roughly."""
    model_dir = build_tiny_model(CLASSES, out, TinySpec(image_size=SIZE, patch_strides=(4, 2, 1)))
    train_tiny(model_dir, frames(7, 16), TinyTrainConfig(steps=150, batch_size=8, lr=2e-3, flip=False,
                                                         aligned_init=True, threads=2))
    return model_dir


def write_set(items: Sequence[SyntheticFrame], out: Path) -> Dataset:
    """Frames as a Florence JSONL data set in `out` (images/NNNNNN.png + annotations.jsonl + classes.txt)."""
    return write_frames(items, CLASSES, out, overwrite=True)


def boxes_found(found: Sequence[Detections], truth: Sequence[Detections], iou: float = 0.5) -> tuple[int, int]:
    """(ground-truth boxes matched by a same-class detection with IoU >= `iou`, ground-truth boxes)."""
    hits = 0
    for dets, gt in zip(found, truth):
        if len(dets) and len(gt):
            overlap = box_iou(dets.xyxy, gt.xyxy) * (dets.class_id[:, None] == gt.class_id[None, :])
            hits += int((overlap.max(axis=0) >= iou).sum())
    return hits, sum(len(gt) for gt in truth)


class FakeAdapterModel:
    """Stands in for a `PeftModel` where only `save_pretrained` matters: writes a PEFT-layout adapter directory."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def save_pretrained(self, out_dir: str, safe_serialization: bool = True) -> None:
        import torch
        from safetensors.torch import save_file

        (Path(out_dir) / "adapter_config.json").write_text('{"r": 8}\n')
        save_file({"lora_A": torch.full((2, 2), self.value)}, str(Path(out_dir) / "adapter_model.safetensors"))
