"""`edge-inspect model list|add|verify|promote|rollback|set-base`: the model store from the command line.

The state directory comes from `--state-dir`, or from the daemon's config (`--config`, its `state_dir`). A promote
or rollback changes what the daemon serves after its next reload (`systemctl reload edge-inspect` or `cmd/reload`).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from agent.store.files import StoreError
from agent.store.model_store import AdapterEntry, ModelStore

_STATE_DIR = typer.Option(None, "--state-dir", help="daemon state directory (holds models/); default: from --config")
_CONFIG = typer.Option(None, "--config", "-c", help="daemon config file whose state_dir to use")


def open_store(state_dir: Path | None, config: Path | None) -> ModelStore:
    """The store of `--state-dir`, else of the config's `state_dir`; exit 2 naming the problem."""
    if state_dir is None and config is None:
        typer.echo("error: give --state-dir DIR or --config FILE", err=True)
        raise typer.Exit(code=2)
    if state_dir is None:
        from agent.config import ConfigError, load_settings

        try:
            state_dir = load_settings(config).state_dir
        except ConfigError as exc:
            typer.echo(f"error: invalid config {exc.source}: {'; '.join(exc.errors)}", err=True)
            raise typer.Exit(code=2) from None
    return ModelStore.in_state_dir(state_dir)


def fail(exc: StoreError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=1)


def describe(entry: AdapterEntry) -> str:
    role = "current" if entry.current else "previous" if entry.previous else ""
    if entry.manifest is None:
        return f"{entry.version:<8} {role:<9} BROKEN: {entry.error}"
    m = entry.manifest
    scores = " ".join(f"{key}={value:.3f}" for key, value in m.metrics.items() if isinstance(value, (int, float)))
    return f"{m.version:<8} {role:<9} {m.created_at}  parent={m.parent or '-'}  {scores}".rstrip()


def list_models(
    state_dir: Path | None = _STATE_DIR,
    config: Path | None = _CONFIG,
    as_json: bool = typer.Option(False, "--json", help="print the manifests as JSON"),
) -> None:
    """List stored adapters, oldest first, marking current and previous."""
    store = open_store(state_dir, config)
    try:
        entries = store.list()
        base = store.base()
    except StoreError as exc:
        raise fail(exc) from None
    if as_json:
        rows = [{"version": e.version, "current": e.current, "previous": e.previous, "error": e.error,
                 "manifest": e.manifest.to_json() if e.manifest else None} for e in entries]
        typer.echo(json.dumps({"base": base, "adapters": rows}, indent=2))
        return
    typer.echo(f"base: {base['path']} ({base['identity'][:19]}…)" if base else "base: none recorded")
    if not entries:
        typer.echo("no adapters stored (the base model serves alone)")
    for entry in entries:
        typer.echo(describe(entry))


def set_base(
    model: Path = typer.Argument(..., help="base model directory (save_pretrained layout, safetensors)"),
    state_dir: Path | None = _STATE_DIR,
    config: Path | None = _CONFIG,
) -> None:
    """Record the base model that every stored adapter must belong to."""
    try:
        identity = open_store(state_dir, config).set_base(model)
    except StoreError as exc:
        raise fail(exc) from None
    typer.echo(f"base model {model} recorded as {identity}")


def add_model(
    adapter: Path = typer.Argument(..., help="PEFT adapter directory (adapter_config.json + safetensors)"),
    state_dir: Path | None = _STATE_DIR,
    config: Path | None = _CONFIG,
    promote: bool = typer.Option(False, "--promote", help="make it current right away"),
) -> None:
    """Copy an adapter into the store as the next version (its manifest.json, if any, supplies metadata)."""
    store = open_store(state_dir, config)
    try:
        version = store.add_adapter(adapter)
        if promote:
            store.promote(version)
    except StoreError as exc:
        raise fail(exc) from None
    typer.echo(f"stored {adapter} as {version}" + (" (now current)" if promote else ""))


def verify_model(
    version: str = typer.Argument(..., help="version to check, e.g. v0003"),
    state_dir: Path | None = _STATE_DIR,
    config: Path | None = _CONFIG,
) -> None:
    """Check an adapter's manifest, base identity and weights checksums."""
    try:
        manifest = open_store(state_dir, config).verify(version)
    except StoreError as exc:
        raise fail(exc) from None
    typer.echo(f"{version} ok: {len(manifest.weights)} weights file(s) match their sha256")


def promote_model(
    version: str = typer.Argument(..., help="version to serve, e.g. v0003"),
    state_dir: Path | None = _STATE_DIR,
    config: Path | None = _CONFIG,
) -> None:
    """Verify VERSION and make it current; the old current becomes previous."""
    store = open_store(state_dir, config)
    try:
        before = store.current()
        pointers = store.promote(version)
    except StoreError as exc:
        raise fail(exc) from None
    if before == version:
        typer.echo(f"{version} is already current; nothing changed")
        return
    typer.echo(f"current: {pointers['current']}, previous: {pointers['previous'] or '-'} "
               "(reload the daemon to serve it: systemctl reload edge-inspect)")


def rollback_model(state_dir: Path | None = _STATE_DIR, config: Path | None = _CONFIG) -> None:
    """Swap current and previous (after verifying previous)."""
    try:
        pointers = open_store(state_dir, config).rollback()
    except StoreError as exc:
        raise fail(exc) from None
    typer.echo(f"rolled back: current: {pointers['current']}, previous: {pointers['previous'] or '-'} "
               "(reload the daemon to serve it: systemctl reload edge-inspect)")


def model_group() -> typer.Typer:
    """A fresh `model` group holding the store's commands; the finetune and calibration plugins add `tiny` and
    `demo` to it (fresh per app, so building a second app never registers a command twice)."""
    group = typer.Typer(no_args_is_help=True, help="Models: tiny test models, the demo model, the model store.")
    group.command("list")(list_models)
    group.command("add")(add_model)
    group.command("verify")(verify_model)
    group.command("promote")(promote_model)
    group.command("rollback")(rollback_model)
    group.command("set-base")(set_base)
    return group
