"""Base models, adapters and a store for the model-store tests (tiny safetensors files, no real model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from agent.store.model_store import ModelStore


def make_base(directory: Path, seed: int = 0) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "florence2", "seed": seed}))
    save_file({"w": np.full((4, 4), seed, dtype=np.float32)}, str(directory / "model.safetensors"))
    return directory


def make_adapter(directory: Path, value: float = 1.0, manifest: dict | None = None) -> Path:
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    save_file({"lora_A": np.full((8, 4), value, dtype=np.float32)}, str(directory / "adapter_model.safetensors"))
    if manifest is not None:
        (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def new_store(tmp_path: Path) -> ModelStore:
    """A store in `tmp_path/state` whose base is `tmp_path/base`."""
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(make_base(tmp_path / "base"))
    return store


def add(store: ModelStore, tmp_path: Path, name: str, value: float = 1.0, **fields: object) -> str:
    return store.add_adapter(make_adapter(tmp_path / name, value), **fields)  # type: ignore[arg-type]
