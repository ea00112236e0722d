"""`manifest.json`: what an adapter directory says about itself, for the trainer and the model store alike.

One type (`Manifest`), one writer (`write_manifest`) and one version scheme:

- `version` is assigned by the model store only: `v0001`, `v0002`, ... in the order adapters are added. An adapter
  the trainer just wrote is not in a store yet, so its manifest says `"version": null`.
- `run_id` names the training run that produced the weights (`run-YYYYMMDDTHHMMSSZ`, the trainer's clock); the store
  keeps it when it adds the adapter. Manifests written before `run_id` existed simply lack it.
- `adapter_label` is how results and `parent` name an adapter: its version, else its run id, else its folder name
  (so an older trainer manifest whose `version` was its run id still reads the same).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.store.files import StoreError, read_json, utc_now, weights_digests, write_json_atomic

MANIFEST = "manifest.json"
REQUIRED_FIELDS = ("version", "parent", "base", "data_hash", "metrics", "thresholds", "weights", "created_at")
_VERSION = re.compile(r"^v(\d{4,})$")


# ----- the version scheme -------------------------------------------------------------------------------------------
def is_store_version(name: str) -> bool:
    return bool(_VERSION.match(name))


def version_number(version: str) -> int:
    match = _VERSION.match(version)
    if match is None:
        raise StoreError(f"invalid version {version!r}: expected v followed by digits, e.g. v0003")
    return int(match.group(1))


def next_version(existing: Iterable[str]) -> str:
    """The version after the highest of `existing` (names that are not versions are ignored)."""
    numbers = [version_number(name) for name in existing if is_store_version(name)]
    return f"v{max(numbers, default=0) + 1:04d}"


# ----- the manifest -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    """What `manifest.json` in each adapter directory records."""

    version: str | None  # assigned by the store (v0001...); None for an adapter that is not stored yet
    parent: str | None  # label of the adapter training started from (see `adapter_label`)
    base: str  # identity of the base model the adapter was trained on (see `base_identity`)
    data_hash: str | None
    metrics: dict[str, Any]
    thresholds: dict[str, float]
    weights: dict[str, str]  # weights file name -> sha256 hex
    created_at: str
    run_id: str | None = None  # the training run that produced the weights
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        if data["run_id"] is None:  # manifests from before run_id existed read and print as they always did
            del data["run_id"]
        return {**data, **extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: Path) -> Manifest:
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            raise StoreError(f"{where}: manifest lacks field(s) {missing}")
        if not isinstance(data["weights"], dict) or not data["weights"]:
            raise StoreError(f"{where}: manifest 'weights' must map each weights file to its sha256")
        known = {name: data[name] for name in (*REQUIRED_FIELDS, "run_id") if name in data}
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(**known, extra=extra)


def write_manifest(
    directory: Path,
    *,
    version: str | None,
    base: str,
    parent: str | None = None,
    data_hash: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, float] | None = None,
    run_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Manifest:
    """The one manifest writer: hashes the safetensors in `directory`, stamps `created_at`, writes atomically."""
    manifest = Manifest(
        version=version, parent=parent, base=base, data_hash=data_hash, metrics=dict(metrics or {}),
        thresholds={name: float(value) for name, value in (thresholds or {}).items()},
        weights=weights_digests(directory), created_at=utc_now(), run_id=run_id, extra=dict(extra or {}),
    )
    write_json_atomic(directory / MANIFEST, manifest.to_json())
    return manifest


def read_manifest(directory: Path) -> Manifest:
    """The complete manifest of an adapter directory; `StoreError` names what is missing or malformed."""
    path = directory / MANIFEST
    if not path.is_file():
        raise StoreError(f"{MANIFEST} is missing in {directory}")
    data = read_json(path)
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object")
    return Manifest.from_json(data, path)


def adapter_label(directory: str | Path) -> str:
    """How results and `parent` name an adapter: manifest version, else run id, else the folder name."""
    directory = Path(directory)
    try:
        data = read_json(directory / MANIFEST)
    except StoreError:
        data = None
    if isinstance(data, dict):
        for key in ("version", "run_id"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
    return directory.name
