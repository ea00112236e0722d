"""The `calibration` entry point: `recalibrate`, the `calibrate` group, and `model demo` in the shared `model` group."""

from __future__ import annotations

import typer

from agent.cli.plugins import SharedGroups
from calibration.cli import register


def test_register_adds_recalibrate_calibrate_camera_and_model_demo() -> None:
    app, model = typer.Typer(), typer.Typer()
    register(app, SharedGroups(model=model))
    assert [info.name for info in app.registered_commands] == ["recalibrate"]
    assert [info.name for info in app.registered_groups] == ["calibrate"]
    (calibrate,) = app.registered_groups
    assert calibrate.typer_instance is not None
    assert [info.name for info in calibrate.typer_instance.registered_commands] == ["board", "camera"]
    assert [info.name for info in model.registered_commands] == ["demo"]
