"""The `edge-inspect` app: the daemon's own commands plus whatever the installed plugins register.

Each command is a thin call into the module that owns the work; heavy imports (torch, training) happen inside the
commands so `edge-inspect --help` and `check-config` stay fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer
from typer.main import get_command_name

from agent.cli.demo import demo
from agent.cli.detect import detect
from agent.cli.plugins import SharedGroups, load_plugins
from agent.cli.queue import queue_app
from agent.cli.run import check_config, run
from agent.cli.store import model_group

# The order `--help` lists commands in, whichever plugin registers them; names not listed come last.
COMMAND_ORDER = ("run", "check-config", "detect", "demo", "evaluate", "finetune", "recalibrate",
                 "calibrate", "data", "model", "queue", "export")
MODEL_COMMAND_ORDER = ("list", "add", "verify", "promote", "rollback", "set-base", "tiny", "train", "demo", "published",
                       "convert")


def build_app() -> typer.Typer:
    """A fresh app: agent's commands, the shared `model` group, then every plugin's commands, in listing order."""
    app = typer.Typer(no_args_is_help=True, add_completion=False, help="Inspection agent for factory lines.")
    app.command("run")(run)
    app.command("check-config")(check_config)
    app.command("detect")(detect)
    app.command("demo")(demo)
    model_app = model_group()
    app.add_typer(model_app, name="model")
    app.add_typer(queue_app, name="queue")
    load_plugins(app, SharedGroups(model=model_app))
    put_in_order(app, COMMAND_ORDER)
    put_in_order(model_app, MODEL_COMMAND_ORDER)
    return app


def put_in_order(group: typer.Typer, order: Sequence[str]) -> None:
    """Sort a group's commands and sub-groups by `order` (stable: unlisted names keep their registration order).

    Typer lists a group's commands first, then its sub-groups, each in registration order; plugins register in
    entry-point order, so without this the listing would depend on which package happened to load first.
    """
    rank = {name: index for index, name in enumerate(order)}

    def command_rank(info: typer.models.CommandInfo) -> int:
        name = info.name or (get_command_name(info.callback.__name__) if info.callback else "")
        return rank.get(name, len(order))

    group.registered_commands.sort(key=command_rank)
    group.registered_groups.sort(key=lambda info: rank.get(info.name or "", len(order)))
