"""`edge-inspect`: the command line (`app`, built once at import; `python -m agent.cli` runs it).

Modules: `app` (assembly and listing order), `plugins` (commands from finetune and calibration through entry
points), `run` (run, check-config), `detect`, `demo`, `store` (the `model` group's store commands), `queue`.
"""

from __future__ import annotations

from agent.cli.app import build_app

app = build_app()

__all__ = ["app", "build_app"]
