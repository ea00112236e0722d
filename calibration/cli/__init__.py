"""calibration's `edge-inspect` commands, registered through the `edge_inspect.commands` entry point `calibration`.

Modules: `recalibrate` (the technician's recalibration run), `demo_model` (`model demo`: train the demo model and
fit its thresholds), `camera` (`calibrate camera`: a camera's pixel -> mm geometry from ChArUco board images).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from calibration.cli.camera import calibrate_app
from calibration.cli.demo_model import demo_model_command
from calibration.cli.recalibrate import recalibrate_command

if TYPE_CHECKING:
    from agent.cli.plugins import SharedGroups


def register(app: typer.Typer, groups: SharedGroups) -> None:
    """Add recalibrate, the `calibrate` group and `model demo`."""
    app.command("recalibrate")(recalibrate_command)
    app.add_typer(calibrate_app, name="calibrate")
    groups.model.command("demo")(demo_model_command)
