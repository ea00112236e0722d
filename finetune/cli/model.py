"""`edge-inspect model tiny`: build an untrained tiny Florence-2 (the `model` group itself belongs to agent)."""

from __future__ import annotations

from pathlib import Path

import typer


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
