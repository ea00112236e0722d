"""Commands that other packages add to `edge-inspect`, found through the `edge_inspect.commands` entry points.

`agent` (the daemon) imports nothing from `finetune` or `calibration`, so a box can run the daemon without the
training code. Those packages register their commands instead: each entry point names a
`register(app, groups)` function that adds commands to the app and to the shared sub-groups. A plugin that cannot
be imported (an optional package missing on this box) loses its commands, and a one-line note says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import typer

ENTRY_POINT_GROUP = "edge_inspect.commands"
_unavailable: dict[str, str] = {}  # plugin -> why it failed to import, from the latest load_plugins


@dataclass(frozen=True)
class SharedGroups:
    """Sub-command groups that several packages add commands to (`model list` from agent, `model tiny` from
    finetune, `model demo` from calibration)."""

    model: typer.Typer


Register = Callable[[typer.Typer, SharedGroups], None]


def plugin_entry_points() -> list[EntryPoint]:
    """The installed command plugins, sorted by name so registration is the same on every box."""
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name)


def load_plugins(app: typer.Typer, groups: SharedGroups) -> dict[str, str]:
    """Let every plugin register its commands; returns `{plugin: reason}` for those that could not be imported."""
    _unavailable.clear()
    for point in plugin_entry_points():
        try:
            register: Register = point.load()
            register(app, groups)
        except ImportError as exc:  # e.g. peft missing on a daemon-only box: the daemon's commands still work
            _unavailable[point.name] = str(exc)
            typer.echo(f"note: the {point.name} commands are unavailable: {exc}", err=True)
    return unavailable_plugins()


def unavailable_plugins() -> dict[str, str]:
    """`{plugin: reason}` for the plugins the latest `load_plugins` could not import."""
    return dict(_unavailable)
