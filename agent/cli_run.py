"""`edge-inspect run` and `check-config` (owned by the daemon work)."""

from __future__ import annotations

from pathlib import Path

import typer


def run(config: Path = typer.Option(..., "--config", "-c", help="YAML config file")) -> None:
    """Run the inspection daemon (SIGTERM drains and exits 0, SIGHUP reloads config and model)."""
    from agent.config import ConfigError, load_settings
    from agent.daemon import Daemon
    from agent.detector.base import DetectorError
    from agent.health.logging import configure_logging
    from agent.store import StoreError

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"invalid config {exc.source}:", err=True)
        for line in exc.errors:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(code=2) from None
    configure_logging(settings.log_level)
    try:
        Daemon(settings, config_path=config).run()
    except (DetectorError, StoreError) as exc:  # nothing safe to inspect with: exit; systemd retries later
        typer.echo(f"error: cannot load the model: {exc}", err=True)
        raise typer.Exit(code=1) from None


def check_config(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    reference: bool = typer.Option(False, "--reference", help="print the config reference (Markdown) instead"),
) -> None:
    """Validate a config file and print the resolved settings (secrets masked), or explain each error."""
    import yaml

    if reference:
        from agent.config_reference import config_reference_markdown

        typer.echo(config_reference_markdown(), nl=False)
        return
    if config is None:
        typer.echo("error: --config is required (or --reference)", err=True)
        raise typer.Exit(code=2)

    from agent.config import ConfigError, dump_settings, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"invalid config {exc.source}:", err=True)
        for line in exc.errors:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(yaml.safe_dump(dump_settings(settings), sort_keys=False), nl=False)
