"""Files of the model store and of adapter directories: hashing, the safetensors-only rule, atomic JSON writes.

Usable without a store (the trainer writes its manifest with them). Only safetensors are accepted: a directory
holding pickle-based weights (`.bin`, `.pt`, ...) is refused outright, because loading a pickle can run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Pickle-based formats can run code when loaded: never accepted, whatever they are called.
FORBIDDEN_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})


class StoreError(RuntimeError):
    """A store operation that cannot be done; the message names the version, file or value at fault."""


# ----- hashing and checks -------------------------------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def refuse_unsafe_weights(directory: Path) -> None:
    """Raise `StoreError` if `directory` holds a pickle-based weights file (only safetensors are loaded)."""
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in FORBIDDEN_SUFFIXES:
            raise StoreError(f"{path}: {path.suffix} weights are refused, only safetensors are accepted")


def weights_digests(directory: Path) -> dict[str, str]:
    """sha256 of every `*.safetensors` file directly in `directory`."""
    return {path.name: sha256_file(path) for path in sorted(directory.glob("*.safetensors")) if path.is_file()}


def base_identity(model_dir: Path) -> str:
    """A base model's identity: sha256 over its config.json and the digests of its safetensors weights."""
    model_dir = Path(model_dir)
    config = model_dir / "config.json"
    if not config.is_file():
        raise StoreError(f"base model {model_dir} has no config.json")
    refuse_unsafe_weights(model_dir)
    weights = weights_digests(model_dir)
    if not weights:
        raise StoreError(f"base model {model_dir} has no *.safetensors weights (only safetensors are accepted)")
    digest = hashlib.sha256(config.read_bytes())
    for name, sha in weights.items():
        digest.update(f"\n{name}:{sha}".encode())
    return "sha256:" + digest.hexdigest()


def check_adapter_dir(directory: Path) -> None:
    """A PEFT adapter directory as the store accepts it: config + safetensors weights, nothing pickled."""
    if not directory.is_dir():
        raise StoreError(f"adapter directory {directory} does not exist")
    refuse_unsafe_weights(directory)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (directory / name).is_file():
            raise StoreError(f"adapter directory {directory} has no {name}")


# ----- JSON on disk -------------------------------------------------------------------------------------------------
def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file, fsync it, `os.replace` it over `path`, fsync the folder."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StoreError(f"{path} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is not valid JSON: {exc}") from exc
