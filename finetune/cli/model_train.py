"""`edge-inspect model train`: a tiny Florence-2 trained from scratch on a labelled data set (the tiny recipe).

For a box with no pretrained Florence-2: LoRA on a random tiny model learns nothing (its image tokens carry no
information); this trains every weight with the recipe that makes the tiny model see (docs/tiny-model-recipe.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from finetune.cli.data import SourceFormat, Split, rich_progress

if TYPE_CHECKING:
    from finetune.data.dataset import Dataset
    from finetune.tiny_train.from_data import DataRecipe


def train_command(
    data: Path = typer.Option(..., "--data", help="training data set (folder, or annotation file for coco/jsonl)"),
    out: Path = typer.Option(..., "--out", help="model directory to write (save_pretrained layout + classes.txt)"),
    data_format: SourceFormat = typer.Option(SourceFormat.jsonl, "--format", help="data set format (both sets)"),
    val: Path | None = typer.Option(None, "--val", help="held-out data set for mAP50 (default: part of --data)"),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="without --val: share of --data held out"),
    split: Split | None = typer.Option(None, "--split", help="deeppcb: split list of --data (default all)"),
    val_split: Split | None = typer.Option(None, "--val-split", help="deeppcb: split list of --val"),
    steps: int = typer.Option(1000, "--steps", min=1, help="training steps (one batch each)"),
    image_size: int = typer.Option(128, "--image-size", help="model input, 128 or 256 px (both a 16x16 grid)"),
    batch: int = typer.Option(16, "--batch", min=1, help="frames per step"),
    lr: float = typer.Option(2e-3, "--lr", min=0.0, help="peak learning rate (every weight trains)"),
    seed: int = typer.Option(0, "--seed", help="seed for initialisation, the held-out split and batches"),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0 = torch's default)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty --out"),
) -> None:
    """Build a tiny Florence-2 for a data set's classes, train it from scratch, report held-out mAP50."""
    from finetune.data import AnnotationError
    from finetune.tiny_train.from_data import DataRecipe

    if out.exists() and any(out.iterdir()) and not overwrite:
        fail(f"--out {out} is not empty (pass --overwrite to replace the model in it)")
    try:
        recipe = DataRecipe(image_size=image_size, steps=steps, batch_size=batch, lr=lr, seed=seed,
                            threads=threads or None)
        recipe.spec()  # a bad --image-size fails before any data is read
        train_set, val_set, about = read_sets(data, data_format, val, val_fraction, split, val_split, seed)
        summary = train_with_progress_bar(train_set, val_set, out, recipe, about)
    except AnnotationError as exc:
        fail(f"{exc}\nnothing trained; fix these annotations first")
    except (OSError, ValueError) as exc:
        fail(str(exc))
    typer.echo(json.dumps({k: v for k, v in summary.items() if k not in ("history", "config")}))
    held = summary["held_out"]
    typer.echo(f"held-out mAP50 {held['map50']:.3f} (mAP {held['map']:.3f}) on {summary['held_out_images']} images "
               f"after {summary['steps']} steps ({summary['seconds_per_step']:.2f} s/step); report in "
               f"{out}/{held['report']} (choose per-class score thresholds from its pr_curves.json: a tiny model's "
               f"scores are low); set model.max_new_tokens >= {summary['max_new_tokens']} to run it")


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def read_sets(data: Path, data_format: SourceFormat, val: Path | None, val_fraction: float, split: Split | None,
              val_split: Split | None, seed: int) -> tuple[Dataset, Dataset, dict[str, Any]]:
    """(training set, held-out set, where they came from): `--val`, or a seeded `--val-fraction` of `--data`."""
    from finetune.data import ReadOptions, read_dataset
    from finetune.tiny_train.dataset_frames import split_dataset

    if val is None and val_split is not None:
        raise ValueError("--val-split needs --val")
    fmt = data_format.value
    full = read_dataset(fmt, data, ReadOptions(split=split.value if split else None), rich_progress)
    about: dict[str, Any] = {"data": str(data), "format": fmt, "split": split.value if split else None}
    if val is None:
        train_set, val_set = split_dataset(full, val_fraction, seed)
        return train_set, val_set, {**about, "held_out_from": f"{val_fraction:g} of --data (seed {seed})"}
    val_set = read_dataset(fmt, val, ReadOptions(split=val_split.value if val_split else None), rich_progress)
    return full, val_set, {**about, "held_out_from": str(val), "val_split": val_split.value if val_split else None}


def train_with_progress_bar(train_set: Dataset, val_set: Dataset, out: Path, recipe: DataRecipe,
                            about: dict[str, Any]) -> dict[str, Any]:
    """`train_on_dataset` behind a rich progress bar on stderr (steps, elapsed, remaining, the loss)."""
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    from finetune.cli.progress import training_bar
    from finetune.tiny_train.from_data import train_on_dataset

    hf_logging.disable_progress_bar()  # one progress bar (ours), not one per save/load
    with training_bar(recipe.steps, Console(stderr=True)) as report:
        return train_on_dataset(train_set, val_set, out, recipe, report, rich_progress, about)
