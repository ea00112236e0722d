"""The trained adapter as it leaves a run: PEFT layout + `manifest.json`, and the version of the adapter a run
starts from (its `parent`)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.store.files import base_identity
from agent.store.manifest import adapter_label, write_manifest
from finetune.lora import save_adapter


def adapter_version(adapter: Path | None) -> str | None:
    """The version an adapter's manifest records (the parent of what we train from it)."""
    return None if adapter is None else adapter_label(adapter)


def write_adapter(model: Any, out_dir: Path, model_dir: Path, data_hash: str, parent: str | None,
                  metrics: dict[str, Any], thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """The adapter (PEFT layout, safetensors) + `manifest.json` in the shape `ModelStore.add_adapter` reads."""
    if out_dir.exists():
        for stale in ("adapter_model.safetensors", "adapter_config.json", "manifest.json"):
            (out_dir / stale).unlink(missing_ok=True)
    save_adapter(model, out_dir)
    run_id = f"run-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"  # the store assigns the version
    manifest = write_manifest(out_dir, version=None, base=base_identity(model_dir), parent=parent,
                              data_hash=data_hash, metrics=metrics, thresholds=thresholds, run_id=run_id)
    return manifest.to_json()
