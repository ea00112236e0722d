"""`edge-inspect export onnx`: merge an adapter and write the ONNX graphs the `onnx` backend runs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

export_app = typer.Typer(no_args_is_help=True, help="Export a model for another runtime (ONNX Runtime).")


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


@export_app.command("onnx")
def export_onnx_command(
    model: str = typer.Option(..., "--model", "-m", help="model directory (save_pretrained layout) or hub id"),
    out: Path = typer.Option(..., "--out", help="export directory to write (graphs, processor, export.json)"),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT LoRA adapter directory, merged before export"),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="fp32 | fp16 | int8 (dynamic, weights)"),
    classes: str | None = typer.Option(None, "--classes", help="comma-separated class names (default: classes.txt)"),
) -> None:
    """Export vision encoder, text encoder and decoder-with-past graphs; run them with `--backend onnx`."""
    from agent.detector.base import DetectorError
    from finetune.cli.families import export_family, is_other_family, model_family
    from finetune.export import ExportError, export_onnx
    from finetune.families import refuse_adapter_export

    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    family = model_family(model)
    if is_other_family(family):  # e.g. Mask R-CNN: one graph at a fixed input size
        if adapter is not None:
            typer.echo(f"error: --adapter: the {family} family has no adapters", err=True)
            raise typer.Exit(code=2)
        written = export_family(family, model, out, precision.value, names)
        typer.echo(f"wrote {written} ({precision.value}, {(written / 'model.onnx').stat().st_size / 1e6:.1f} MB)")
        return
    try:
        refuse_adapter_export(model)  # an adapter family other than Florence-2 has no export yet
        written = export_onnx(model, out, adapter, precision.value, names)
    except (DetectorError, ExportError, ValueError) as exc:  # ValueError: a family without ONNX export
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    sizes = {p.name: p.stat().st_size for p in sorted(written.glob("*.onnx"))}
    total_mb = sum(sizes.values()) / 1e6
    typer.echo(f"wrote {written} ({precision.value}, {total_mb:.1f} MB): {', '.join(sizes)}")
