"""`edge-inspect run` and `check-config` (owned by the daemon work)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from agent.config import Settings


def run(config: Path = typer.Option(..., "--config", "-c", help="YAML config file")) -> None:
    """Run the inspection daemon (SIGTERM drains and exits 0, SIGHUP reloads config and model)."""
    from agent.daemon import Daemon
    from agent.detector.base import DetectorError
    from agent.health.logging import configure_logging
    from agent.store.files import StoreError

    settings = load_settings_or_exit(config)
    configure_logging(settings.log_level)
    quiet_model_loading()
    try:
        Daemon(settings, config_path=config).run()
    except (DetectorError, StoreError) as exc:  # nothing safe to inspect with: exit; systemd retries later
        typer.echo(f"error: cannot load the model: {exc}", err=True)
        raise typer.Exit(code=1) from None


def quiet_model_loading() -> None:
    """No transformers progress bars in the daemon's output: the journal wants one JSON object per line."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def check_config(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    reference: bool = typer.Option(False, "--reference", help="print the config reference (Markdown) instead"),
) -> None:
    """Validate a config file and print the resolved settings (secrets masked), or explain each error."""
    import yaml

    if reference:
        from agent.config.reference import config_reference_markdown

        typer.echo(config_reference_markdown(), nl=False)
        return
    if config is None:
        typer.echo("error: --config is required (or --reference)", err=True)
        raise typer.Exit(code=2)

    from agent.config import dump_settings

    settings = load_settings_or_exit(config)
    typer.echo(yaml.safe_dump(dump_settings(settings), sort_keys=False), nl=False)


def load_settings_or_exit(config: Path) -> Settings:
    """The validated settings, or every problem on stderr (one `path: reason` line each) and exit code 2."""
    from agent.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"invalid config {exc.source}:", err=True)
        for line in exc.errors:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(code=2) from None
