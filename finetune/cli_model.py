"""`edge-inspect model ...`: build tiny models and the demo model."""

from __future__ import annotations

from pathlib import Path

import typer

from agent import cli_store

model_app = typer.Typer(no_args_is_help=True, help="Models: tiny test models, the demo model, the model store.")
model_app.command("list")(cli_store.list_models)
model_app.command("add")(cli_store.add_model)
model_app.command("verify")(cli_store.verify_model)
model_app.command("promote")(cli_store.promote_model)
model_app.command("rollback")(cli_store.rollback_model)
model_app.command("set-base")(cli_store.set_base)


@model_app.command("tiny")
def tiny(
    classes: str = typer.Option(..., "--classes", help="comma-separated class names, e.g. scratch,hole,stain"),
    out: Path = typer.Option(..., "--out", help="directory to write (save_pretrained layout)"),
    image_size: int = typer.Option(256, "--image-size", help="input resolution in pixels (multiple of 16)"),
    seed: int = typer.Option(0, "--seed", help="initialisation seed"),
) -> None:
    """Build an untrained tiny Florence-2 (~2 M parameters) for a class list."""
    from finetune.tiny import TinySpec, build_tiny_model

    names = [c.strip() for c in classes.split(",") if c.strip()]
    if image_size % 16:
        typer.echo(f"error: --image-size {image_size} is not a multiple of 16", err=True)
        raise typer.Exit(code=2)
    try:
        path = build_tiny_model(names, out, TinySpec(image_size=image_size, seed=seed))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"wrote tiny Florence-2 for classes {names} to {path}")


@model_app.command("demo")
def demo(
    out: Path = typer.Option(..., "--out", help="directory to write the trained demo model to"),
    steps: int = typer.Option(500, "--steps", min=1, help="training steps (batch 16)"),
    seed: int = typer.Option(0, "--seed", help="seed for initialisation, synthetic frames and batches"),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads for torch (0 = torch's default)"),
) -> None:
    """Train the tiny demo model from scratch on synthetic defects and report precision/recall on unseen frames."""
    import json

    import torch
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from transformers.utils import logging as hf_logging

    from finetune.tiny_train import build_demo_model

    hf_logging.disable_progress_bar()  # one progress bar (ours), not one per save/load
    if threads:
        torch.set_num_threads(threads)
    columns = (TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[loss]}"))
    with Progress(*columns) as bar:
        task = bar.add_task("train", total=steps, loss="")

        def report(step: int, total: int, values: dict[str, float]) -> None:
            bar.update(task, completed=step, loss=f"loss {values['loss']:.3f}")

        result, quality = build_demo_model(out, steps=steps, seed=seed, progress=report)
    summary = {"model": str(out), "steps": result.steps, "seconds": round(result.seconds, 1),
               "final_loss": {k: round(v, 4) for k, v in result.final.items()},
               "unseen_frames": quality.to_dict()}
    (out / "demo_metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(json.dumps(summary))
