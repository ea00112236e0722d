"""`edge-inspect finetune`: LoRA fine-tuning of a model (Florence-2, or another family's trainer) on a labelled data
set."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from finetune.cli.data import SourceFormat


class Schedule(str, Enum):
    """Choices for --schedule (a test checks they match `finetune.train.config.SCHEDULES`)."""

    cosine = "cosine"
    three_stage = "three-stage"


def recipe_options(augment: bool, hard_examples: float, hard_weight: float, schedule: Schedule) -> dict[str, Any]:
    """The training-recipe flags as `TrainConfig` fields (augmentation with its described defaults when on)."""
    from finetune.train.config import AugmentSettings

    return {"augment": AugmentSettings() if augment else None, "hard_fraction": hard_examples,
            "hard_weight": hard_weight, "schedule": schedule.value}


def finetune_command(
    model: Path = typer.Option(..., "--model", "-m", help="base model directory (save_pretrained layout)"),
    data: Path = typer.Option(..., "--data", help="training data set (folder, or annotation file for coco/jsonl)"),
    out: Path = typer.Option(..., "--out", help="adapter directory to write (PEFT layout + manifest.json)"),
    data_format: SourceFormat = typer.Option(SourceFormat.jsonl, "--format", help="training data format"),
    val: Path | None = typer.Option(None, "--val", help="validation data set (same format) for loss and mAP"),
    adapter: Path | None = typer.Option(None, "--adapter", help="continue training this adapter (incremental)"),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="run directory (default: OUT.run)"),
    epochs: int = typer.Option(3, "--epochs", min=1, help="passes over the training set"),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="stop after this many steps (wins)"),
    batch: int = typer.Option(4, "--batch", min=1, help="frames per step"),
    lr: float = typer.Option(2e-4, "--lr", min=0.0, help="peak learning rate (not used by --schedule three-stage)"),
    warmup: int = typer.Option(10, "--warmup", min=0, help="linear warm-up steps before the cosine decay"),
    r: int = typer.Option(8, "--lora-r", min=1, help="LoRA rank"),
    alpha: int = typer.Option(16, "--lora-alpha", min=1, help="LoRA alpha"),
    dropout: float = typer.Option(0.05, "--lora-dropout", min=0.0, max=0.99, help="LoRA dropout"),
    vision: bool = typer.Option(False, "--vision/--no-vision",
                                help="also adapt the vision tower (Florence-2: DaViT; PaliGemma 2: SigLIP)"),
    whole: list[str] = typer.Option(
        [], "--whole", help="Florence-2: a part trained in full and carried whole inside the adapter instead of "
        "through LoRA (repeatable): vision_tower, multi_modal_projector. For a small model whose image features must "
        "change (docs/training.md); the adapter then holds a copy of the part"),
    unfreeze_vision: int | None = typer.Option(
        None, "--unfreeze-vision-epoch", min=0, help="staged: vision LoRA trains from this epoch (0-based) on"),
    shuffle_boxes: bool = typer.Option(False, "--shuffle-boxes", help="suffix order augmentation"),
    augment: bool = typer.Option(
        False, "--augment/--no-augment",
        help="image augmentation: flips (each 50 %), crops of 80-100 % of a side, brightness/contrast +-20 %; boxes "
             "follow (clipped; a box with under half its area left in the crop is dropped). Default: off"),
    hard_examples: float = typer.Option(
        0.0, "--hard-examples", min=0.0, max=1.0,
        help="hard-example mining: this fraction of each batch with the highest loss (e.g. 0.2) is weighted up. "
             "Default 0: off"),
    hard_weight: float = typer.Option(
        2.0, "--hard-weight", min=1.0, help="raw weight of those hardest samples (others 1), normalised to mean 1"),
    schedule: Schedule = typer.Option(
        Schedule.cosine, "--schedule",
        help="cosine: warm-up then cosine decay from --lr. three-stage (preset): lr 1e-4 with the first 2 vision "
             "stages' LoRA frozen, then 5e-5 with the first frozen, then 1e-5 all unfrozen; thirds of the steps"),
    tasks: str = typer.Option(
        "<OD>", "--tasks",
        help="prompts the <OD> frames are trained with, derived from their boxes, one drawn per frame: e.g. "
             "<OD>,<CAPTION_TO_PHRASE_GROUNDING> (a class on the frame as the phrase)"),
    task_mix: str | None = typer.Option(
        None, "--task-mix",
        help="when the jsonl data also holds region-task lines (<DENSE_REGION_CAPTION>, <CAPTION_TO_PHRASE_GROUNDING>"
             "phrase): the order and ratio of the tasks, one task per step, e.g. od=2,dense=1,grounding=1 (the "
             "default for such data) or od,dense,grounding (one step each). docs/training.md"),
    checkpointing: bool | None = typer.Option(
        None, "--grad-checkpointing/--no-grad-checkpointing",
        help="activation checkpointing: less GPU memory, 1.5-5x slower steps. Default: off on CPU (it saves no "
             "memory that matters there); on CUDA on only when one batch's activations would not fit in free memory"),
    amp: str = typer.Option("auto", "--amp", help="auto | off | bf16 | fp16 (CUDA only)"),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=1, help="save a resumable state every N"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run directory's last checkpoint"),
    max_minutes: float | None = typer.Option(None, "--max-minutes", min=0.0, help="time budget"),
    seed: int = typer.Option(0, "--seed", help="seed for batches, augmentation and LoRA init"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0 = torch's default)"),
) -> None:
    """Fine-tune a LoRA adapter; writes the adapter + manifest to --out and curves/checkpoints to the run dir. A model
    of another family (Mask R-CNN) is fine-tuned whole into --out, with the recipe options that apply to it."""
    import torch

    from finetune.cli.families import finetune_family, is_other_family, model_family

    if threads:
        torch.set_num_threads(threads)
    family = model_family(model)
    if is_other_family(family):
        return finetune_family(family, data_format.value, data, val, model=model, out=out, epochs=epochs,
                               max_steps=max_steps, batch_size=batch, lr=lr, warmup_steps=warmup, amp=amp,
                               seed=seed, device=device, augment=augment,
                               max_seconds=max_minutes * 60 if max_minutes else None)

    from agent.store.files import StoreError
    from finetune.data import AnnotationError, read_dataset
    from finetune.families import lora_trainer
    from finetune.lora import LoraError, LoraSettings
    from finetune.train.config import TrainConfig, TrainError
    from finetune.train.run import train_lora
    from finetune.train.task_mix import parse_task_mix

    try:
        config = TrainConfig(
            epochs=epochs, max_steps=max_steps, batch_size=batch, lr=lr, warmup_steps=warmup, seed=seed,
            lora=LoraSettings(r=r, alpha=alpha, dropout=dropout, vision=vision, whole=tuple(whole)),
            gradient_checkpointing=checkpointing,
            amp=amp, unfreeze_vision_epoch=unfreeze_vision, shuffle_boxes=shuffle_boxes,
            tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), checkpoint_every=checkpoint_every,
            task_mix=parse_task_mix(task_mix) if task_mix is not None else None,
            max_seconds=max_minutes * 60 if max_minutes else None, device=device,
            **recipe_options(augment, hard_examples, hard_weight, schedule))
        train_set = read_dataset(data_format.value, data)
        val_set = read_dataset(data_format.value, val) if val is not None else None
        train = lora_trainer(model) or train_lora  # the model's adapter family (Florence-2: train_lora)
        with ProgressBar() as report:
            result = train(model, train_set, out, config, val_set, adapter, run_dir, resume, report)
    except (AnnotationError, LoraError, TrainError, StoreError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    summary = {"adapter": str(result.adapter_dir), "run_dir": str(result.run_dir), "steps": result.steps,
               "resumed_from": result.resumed_from, "stopped": result.stopped,
               "metrics": result.manifest["metrics"]}
    typer.echo(json.dumps(summary, default=str))


class ProgressBar:
    """A rich progress bar (steps, loss) on stderr that the trainer's progress callback drives."""

    def __enter__(self) -> Callable[[int, int, dict[str, float]], None]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]fine-tuning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[loss]}"), console=Console(stderr=True))
        self.task = self.bar.add_task("train", total=None, loss="")
        self.bar.start()
        return self.update

    def update(self, step: int, total: int, values: dict[str, float]) -> None:
        self.bar.update(self.task, completed=step, total=total, loss=f"loss {values['loss']:.4f}")

    def __exit__(self, *_exc: object) -> None:
        self.bar.stop()
