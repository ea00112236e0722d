"""The `recalibration` section: what `edge-inspect recalibrate` reads (the daemon never does): the golden set, replay,
the promotion gate, training and the line's own evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RecalibrationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    golden_set: Path | None = Field(
        default=None, description="Extra held-out golden set (Florence JSONL folder or .jsonl), judged on beside the "
        "queue's verified golden frames, or null (the queue's golden frames alone)"
    )
    min_golden_per_class: int = Field(
        default=3, ge=0, description="A run refuses to start while the golden set has fewer boxes than this of any "
        "class (0: no minimum)"
    )
    replay_data: Path | None = Field(
        default=None, description="Earlier training data (Florence JSONL) replayed beside the queue, or null"
    )
    replay_ratio: float = Field(
        default=1.0, ge=0, le=100, description="Replay frames per labelled queue frame (capped by replay_max)"
    )
    replay_max: int = Field(default=500, ge=0, description="At most this many replay frames per run")
    min_labelled: int = Field(
        default=1, ge=1, description="Fewer verified training frames in the queue than this: nothing to learn"
    )
    ap_margin: float = Field(
        default=0.02, ge=0, le=1, description="Gate: no class may lose more than this AP@[.5:.95] vs the current model"
    )
    min_map50_delta: float = Field(
        default=0.01, ge=0, le=1, description="Gate: golden mAP50 must rise by at least this much (and by more than "
        "its noise: the lower bound of a bootstrap interval over golden frames must be above 0)"
    )
    bootstrap_resamples: int = Field(
        default=200, ge=20, le=10000, description="Gate: resamples of the golden frames for the 95 % interval of the "
        "mAP50 change (seeded by seed)"
    )
    target_precision: float = Field(
        default=0.9, gt=0, le=1, description="Per-class thresholds are re-fitted to reach this precision"
    )
    target_recall: float | None = Field(
        default=None, gt=0, le=1, description="Fit thresholds to this recall instead of a precision (null: precision)"
    )
    max_minutes: float = Field(default=60.0, gt=0, description="Training time budget of one run")
    max_memory_mb: float | None = Field(
        default=None, gt=0, description="Stop training above this peak memory (GPU: allocated; CPU: resident)"
    )
    epochs: int = Field(default=3, ge=1, le=1000, description="Training epochs over the snapshot")
    min_steps: int = Field(
        default=0, ge=0, le=100000, description="Train at least this many steps however few frames were verified "
        "(more epochs over a small snapshot); 0: epochs alone decide. At epochs 24 and batch 16, 100 labels + 100 "
        "replay train 312 steps and 200 + 200 train 600: the fewer labels, the less the model moves "
        "(docs/training.md, 'Active learning under drift')"
    )
    batch_size: int = Field(default=4, ge=1, le=256, description="Training batch size")
    lr: float = Field(default=1e-4, gt=0, le=1, description="Learning rate of the LoRA weights")
    lora_r: int = Field(default=8, ge=1, le=256, description="LoRA rank of a first adapter (later runs keep theirs)")
    lora_alpha: int = Field(default=16, ge=1, description="LoRA alpha of a first adapter")
    lora_vision: bool = Field(
        default=False, description="A first adapter also adapts the vision tower (DaViT attention and MLP), not only "
        "the text side: for a change in what the camera sees (lamp, background, how defects look); more to train"
    )
    lora_whole: list[Literal["vision_tower", "multi_modal_projector"]] = Field(
        default_factory=list, description="Parts a first adapter trains in full and carries whole (PEFT "
        "modules_to_save) instead of through LoRA: vision_tower, multi_modal_projector. For a small model whose image "
        "features must follow a change on the line (docs/training.md, 'Active learning under drift'); every stored "
        "adapter then holds a copy of them (the demo model's: 2.6 MB)"
    )
    loc_sigma: float = Field(
        default=0.0, ge=0, le=50, description="Gaussian soft targets over neighbouring <loc> bins (a near miss costs "
        "less than a far one), in bins; 0: one-hot targets. The demo model was trained with 1.5 at the end"
    )
    seed: int = Field(default=0, description="Seed for replay sampling and training")
    augment: bool = Field(
        default=False, description="Image augmentation while training: flips, crops of 80-100 % of a side, "
        "brightness/contrast +-20 %; boxes follow the pixels (docs/training.md)"
    )
    hard_examples: float = Field(
        default=0.0, ge=0, le=1, description="Hard-example mining: this fraction of each training batch with the "
        "highest loss is weighted x2, weights normalised to a mean of 1 (0: off)"
    )
    schedule: Literal["cosine", "three-stage"] = Field(
        default="cosine", description="Learning-rate schedule: cosine (warm-up, then cosine decay from lr) or "
        "three-stage (preset: 1e-4, 5e-5, 1e-5 over thirds of the steps, vision LoRA unfrozen stage by stage; lr "
        "unused)"
    )
    notify: Literal["mqtt", "none"] = Field(
        default="none", description="After a promotion: publish cmd/reload over MQTT, or none (systemd reloads)"
    )
    publish_events: bool = Field(default=True, description="Send recalibration progress to the MQTT events topic")
    work_dir: Path | None = Field(
        default=None, description="Where runs write snapshots, adapters and reports (null: {state_dir}/recalibration)"
    )
    onnx_precision: Literal["fp32", "fp16", "int8"] = Field(
        default="fp32", description="On an onnx line (model.backend onnx): precision of the candidate's ONNX export, "
        "evaluated and stored beside the adapter version it serves"
    )
    base_model: Path | None = Field(
        default=None, description="On an onnx line, whose model.path is an ONNX export: the base model folder "
        "(save_pretrained) it was exported from, which runs train on; null elsewhere"
    )
