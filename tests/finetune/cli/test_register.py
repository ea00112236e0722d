"""The `finetune` entry point: which commands it adds to the app and to the shared `model` group."""

from __future__ import annotations

import typer

from agent.cli.plugins import SharedGroups
from finetune.cli import register


def test_register_adds_evaluate_finetune_data_export_and_model_tiny_train_published_convert() -> None:
    app, model = typer.Typer(), typer.Typer()
    register(app, SharedGroups(model=model))
    assert [info.name for info in app.registered_commands] == ["evaluate", "finetune"]
    assert [info.name for info in app.registered_groups] == ["data", "export"]
    assert [info.name for info in model.registered_commands] == ["tiny", "train", "published", "convert"]
