"""ONNX exports of stored adapters, for lines on the `onnx` backend (which serves merged graphs, not adapters).

A recalibration run on an onnx line exports the merged candidate (`finetune.export`) into the candidate adapter's
`onnx/` folder; `ModelStore.add_adapter` installs that export (or the one passed as `onnx_export=DIR`) inside the
version, in the same atomic rename as the adapter, so a version that becomes current on an onnx line always has the
graphs the daemon will load::

    adapters/v0003/
      adapter_config.json, adapter_model.safetensors, manifest.json
      onnx/                  vision_encoder.onnx, encoder_model.onnx, decoder_model_with_past.onnx, export.json, ...

The manifest lists the export under `onnx`: `{"dir": "onnx", "precision": "fp16", "files": {name: sha256}}`, and
`ModelStore.verify` checks every one of those files like the adapter weights. `export.json`'s `version` is
re-stamped `<base>+<store version>` so results name the stored version, exactly as a torch backend would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from agent.store.files import StoreError, refuse_unsafe_weights, sha256_file

EXPORT_DIR = "onnx"
EXPORT_KEY = "onnx"  # the manifest field (kept in the manifest's extra fields)
EXPORT_MANIFEST = "export.json"


def bundled_export(adapter_dir: Path) -> Path | None:
    """The export an adapter folder carries in `onnx/` (a recalibration run writes its candidate's there), or None."""
    folder = adapter_dir / EXPORT_DIR
    return folder if (folder / EXPORT_MANIFEST).is_file() else None


def copy_export(src: Path, staging: Path) -> Path:
    """Copy an export directory's files into `staging/onnx` (the version being installed); returns that folder."""
    src = Path(src)
    if not (src / EXPORT_MANIFEST).is_file():
        raise StoreError(f"{src} is not an ONNX export (no {EXPORT_MANIFEST})")
    refuse_unsafe_weights(src)
    target = staging / EXPORT_DIR
    target.mkdir()
    for path in sorted(src.iterdir()):
        if path.is_file():
            shutil.copy2(path, target / path.name)
    return target


def stamp_export(export_dir: Path, version: str) -> dict[str, Any]:
    """Re-stamp `export.json`'s version for the store `version` and return the manifest's `onnx` listing."""
    manifest_path = export_dir / EXPORT_MANIFEST
    data = json.loads(manifest_path.read_text())
    base = str(data.get("version", "")).split("+", 1)[0]
    data["version"] = f"{base}+{version}" if base else version
    manifest_path.write_text(json.dumps(data, indent=1) + "\n")
    files = {p.name: sha256_file(p) for p in sorted(export_dir.iterdir()) if p.is_file()}
    return {"dir": EXPORT_DIR, "precision": data.get("precision"), "files": files}


def export_listing(extra: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's `onnx` listing, or None when the version has no export."""
    listing = extra.get(EXPORT_KEY)
    return listing if isinstance(listing, dict) else None


def verify_export(version: str, directory: Path, listing: dict[str, Any]) -> Path:
    """Check every listed export file's sha256; returns the export folder."""
    files = listing.get("files")
    if not isinstance(files, dict) or not files:
        raise StoreError(f"adapter {version}: the manifest's onnx listing names no files")
    export_dir = directory / str(listing.get("dir", EXPORT_DIR))
    for name, expected in sorted(files.items()):
        path = export_dir / name
        if not path.is_file():
            raise StoreError(f"adapter {version}: ONNX export file {path} is missing")
        if sha256_file(path) != expected:
            raise StoreError(f"adapter {version}: ONNX export file {path} is corrupt: sha256 does not match the "
                             "manifest")
    return export_dir
