"""`edge-inspect model published` (a published Florence-2 architecture with random weights) and `model convert`
(an old remote-code checkpoint or LoRA adapter -> the native layout); docs/models.md."""

from __future__ import annotations

from pathlib import Path

import typer

DTYPES = {"fp16": "float16", "fp32": "float32", "bf16": "bfloat16"}


def published(
    variant: str = typer.Option("base", "--variant", help="base, base-ft, large or large-ft"),
    out: Path = typer.Option(..., "--out", help="directory to write (save_pretrained layout)"),
    dtype: str = typer.Option("fp16", "--dtype", help="weights' dtype: fp16 (as published), fp32 or bf16"),
    seed: int = typer.Option(0, "--seed", help="initialisation seed"),
) -> None:
    """Write a published Florence-2 architecture (configs, tokenizer, processor) with random weights."""
    import torch

    from finetune.published import build_published

    if dtype not in DTYPES:
        typer.echo(f"error: --dtype {dtype!r}: choose one of {', '.join(DTYPES)}", err=True)
        raise typer.Exit(code=2)
    try:
        path = build_published(variant, out, getattr(torch, DTYPES[dtype]), seed=seed)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"wrote Florence-2 {variant} (random weights, {dtype}) to {path}")


def convert(
    out: Path = typer.Option(..., "--out", help="new directory for the native checkpoint or adapter"),
    model: Path = typer.Option(None, "--model", help="old remote-code checkpoint directory (microsoft/Florence-2-*)"),
    adapter: Path = typer.Option(None, "--adapter", help="old-layout LoRA adapter directory (maestro, autodistill)"),
    base: Path = typer.Option(None, "--base", help="with --adapter: the native base directory it will run on"),
) -> None:
    """Convert an old remote-code Florence-2 checkpoint, or a LoRA adapter trained on one, to the native layout."""
    from finetune.convert import ConvertError, convert_checkpoint
    from finetune.convert_adapter import convert_adapter

    if (model is None) == (adapter is None) or (adapter is not None and base is None):
        typer.echo("error: give either --model OLD_DIR, or --adapter OLD_ADAPTER with --base NATIVE_DIR", err=True)
        raise typer.Exit(code=2)
    try:
        path = convert_checkpoint(model, out) if model is not None else convert_adapter(adapter, out, base)
    except ConvertError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"wrote the native {'checkpoint' if model is not None else 'adapter'} to {path}")
