"""`edge-inspect model tiny`: build an untrained tiny model of a family (the `model` group itself belongs to agent)."""

from __future__ import annotations

from pathlib import Path

import typer


def tiny(
    classes: str = typer.Option(..., "--classes", help="comma-separated class names, e.g. scratch,hole,stain"),
    out: Path = typer.Option(..., "--out", help="directory to write (save_pretrained layout)"),
    image_size: int = typer.Option(256, "--image-size",
                                   help="input resolution in pixels (a multiple of 16: the patch grid)"),
    seed: int = typer.Option(0, "--seed", help="initialisation seed"),
    family: str = typer.Option("florence2", "--family", help="model family (florence2 is the default)"),
) -> None:
    """Build an untrained tiny model (Florence-2: ~2 M parameters) for a class list."""
    from finetune.families import TinyRequest, kit_for

    names = [c.strip() for c in classes.split(",") if c.strip()]
    try:
        kit = kit_for(family)
        path = kit.build_tiny(TinyRequest(names, out, image_size, seed))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"wrote tiny {kit.title} for classes {names} to {path}")
