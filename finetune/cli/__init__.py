"""finetune's `edge-inspect` commands, registered through the `edge_inspect.commands` entry point `finetune`.

Modules: `data` (data synth / convert), `evaluate`, `train` (finetune), `export` (export onnx), `model` (model tiny),
`model_train` (model train: the tiny recipe on a data set), `model_convert` (model published, model convert).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from finetune.cli.data import data_app
from finetune.cli.evaluate import evaluate_command
from finetune.cli.export import export_app
from finetune.cli.model import tiny
from finetune.cli.model_convert import convert, published
from finetune.cli.model_train import train_command
from finetune.cli.train import finetune_command

if TYPE_CHECKING:
    from agent.cli.plugins import SharedGroups


def register(app: typer.Typer, groups: SharedGroups) -> None:
    """Add evaluate, finetune, the data and export groups, `model tiny`, `model train`, `model published` and
    `model convert`."""
    app.command("evaluate")(evaluate_command)
    app.command("finetune")(finetune_command)
    app.add_typer(data_app, name="data")
    app.add_typer(export_app, name="export")
    groups.model.command("tiny")(tiny)
    groups.model.command("train")(train_command)
    groups.model.command("published")(published)
    groups.model.command("convert")(convert)
