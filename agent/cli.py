"""`edge-inspect` command line: each command is a thin call into the module that owns the work.

Sub-command groups live beside the code they drive; imports of heavy modules (torch, training) happen inside
the commands so `edge-inspect --help` and `check-config` stay fast.
"""

from __future__ import annotations

import typer

from agent.cli_demo import demo
from agent.cli_detect import detect
from agent.cli_run import check_config, run
from agent.learn.cli import queue_app
from calibration.cli import recalibrate_command
from finetune.cli_data import data_app
from finetune.cli_evaluate import evaluate_command
from finetune.cli_export import export_app
from finetune.cli_finetune import finetune_command
from finetune.cli_model import model_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Inspection agent for factory lines.")
app.command()(run)
app.command("check-config")(check_config)
app.command()(detect)
app.command()(demo)
app.command("evaluate")(evaluate_command)
app.command("finetune")(finetune_command)
app.command("recalibrate")(recalibrate_command)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(queue_app, name="queue")
app.add_typer(export_app, name="export")


if __name__ == "__main__":
    app()
