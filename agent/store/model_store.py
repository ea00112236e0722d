"""`ModelStore`: versioned adapters on top of one base model, with an atomically switched current/previous pair.

A switch (`promote`, `rollback`) writes `pointers.json` to a temporary file and `os.replace`s it: current and
previous change together in one atomic rename, so a power cut leaves either the old or the new pair, never a mix.
Every adapter is verified (manifest present, base identity, sha256 of each weights file) before it becomes current.
The layout is described in `agent/store/__init__.py`; manifests and versions in `agent/store/manifest.py`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.statedir import StateDir
from agent.store.exports import (
    EXPORT_DIR,
    EXPORT_KEY,
    bundled_export,
    copy_export,
    export_listing,
    stamp_export,
    verify_export,
)
from agent.store.files import (
    StoreError,
    base_identity,
    check_adapter_dir,
    fsync_dir,
    read_json,
    sha256_file,
    utc_now,
    write_json_atomic,
)
from agent.store.manifest import (
    MANIFEST,
    Manifest,
    is_store_version,
    next_version,
    read_manifest,
    version_number,
    write_manifest,
)


@dataclass(frozen=True)
class AdapterEntry:
    """One row of `list()`: a stored adapter, its manifest (None when unreadable) and its role."""

    version: str
    path: Path
    manifest: Manifest | None
    current: bool
    previous: bool
    error: str | None = None


class ModelStore:
    """Versioned adapters on top of one base model, with an atomically switched current/previous pair."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.adapters_dir = self.root / "adapters"
        self.pointers_file = self.root / "pointers.json"
        self.base_file = self.root / "base.json"

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> ModelStore:
        return cls(StateDir(state_dir).models)

    # ----- base model -----------------------------------------------------------------------------------------------
    def set_base(self, model_dir: Path) -> str:
        """Record the base model every adapter must belong to; returns its identity."""
        identity = base_identity(model_dir)
        with self._locked():
            write_json_atomic(self.base_file, {"path": str(Path(model_dir).absolute()), "identity": identity})
        return identity

    def base(self) -> dict[str, str] | None:
        """`{"path", "identity"}` of the recorded base model, or None when none is recorded yet."""
        if not self.base_file.exists():
            return None
        data = read_json(self.base_file)
        if not isinstance(data, dict) or "identity" not in data or "path" not in data:
            raise StoreError(f"{self.base_file}: expected an object with 'path' and 'identity'")
        return {"path": str(data["path"]), "identity": str(data["identity"])}

    def verify_base(self, model_dir: Path | None = None) -> str:
        """Re-hash `model_dir` (default: the recorded path) and check it is the recorded base; returns its identity.

        The daemon calls this at start-up with its configured model so that adapters never land on another base.
        """
        base = self._require_base()
        directory = Path(model_dir) if model_dir is not None else Path(base["path"])
        identity = base_identity(directory)
        if identity != base["identity"]:
            raise StoreError(f"base model {directory} is {identity}, but the store's adapters belong to "
                             f"{base['identity']} ({base['path']}): changed or corrupt weights, or another model")
        return identity

    # ----- adding adapters ------------------------------------------------------------------------------------------
    def add_adapter(
        self,
        src: Path,
        *,
        parent: str | None = None,
        data_hash: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        thresholds: Mapping[str, float] | None = None,
        extra: Mapping[str, Any] | None = None,
        onnx_export: Path | None = None,
    ) -> str:
        """Copy the PEFT adapter in `src` into the store under the next version; returns that version.

        The store needs a base (`set_base`). `parent` defaults to the current version. A `manifest.json` already in
        `src` (written by the trainer) supplies fields not given here; its `base`, if any, must match the store's.
        `onnx_export`, an export of the merged adapter (default: `src/onnx` when it holds one), is installed inside
        the version (`agent.store.exports`).
        """
        src = Path(src)
        check_adapter_dir(src)
        onnx_export = onnx_export if onnx_export is not None else bundled_export(src)
        base = self._require_base()
        given = self._src_manifest_fields(src)
        if given.get("base") not in (None, base["identity"]):
            raise StoreError(f"{src}: adapter was trained on base {given['base']}, "
                             f"but the store's base is {base['identity']} ({base['path']})")
        fields: dict[str, Any] = {
            "parent": parent if parent is not None else given.get("parent", self.current()),
            "data_hash": data_hash if data_hash is not None else given.get("data_hash"),
            "metrics": dict(metrics if metrics is not None else given.get("metrics", {})),
            "thresholds": {k: float(v) for k, v in (thresholds if thresholds is not None
                                                    else given.get("thresholds", {})).items()},
            "run_id": given.get("run_id"),
            "extra": {**given.get("extra", {}), **dict(extra or {})},
        }
        return self._install(src, base["identity"], fields, onnx_export)

    def _src_manifest_fields(self, src: Path) -> dict[str, Any]:
        path = src / MANIFEST
        if not path.exists():
            return {}
        data = read_json(path)
        if not isinstance(data, dict):
            raise StoreError(f"{path}: expected a JSON object")
        known = {"base", "parent", "data_hash", "metrics", "thresholds", "run_id"}
        skip = known | {"version", "weights", "created_at"}  # the store assigns these itself
        fields = {key: data[key] for key in known if key in data}
        fields["extra"] = {key: value for key, value in data.items() if key not in skip}
        return fields

    def _install(self, src: Path, base: str, fields: dict[str, Any], onnx_export: Path | None = None) -> str:
        self.adapters_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.adapters_dir))
        try:
            for path in sorted(src.iterdir()):
                if path.is_file() and path.name != MANIFEST:
                    shutil.copy2(path, staging / path.name)
            export = copy_export(onnx_export, staging) if onnx_export is not None else None
            with self._locked():
                version = next_version(p.name for p in self.adapters_dir.iterdir())
                if export is not None:  # the export names the version, so it is stamped once the version is known
                    fields = {**fields, "extra": {**fields["extra"], EXPORT_KEY: stamp_export(export, version)}}
                write_manifest(staging, version=version, base=base, **fields)
                os.rename(staging, self.adapters_dir / version)  # atomic: the version appears complete or not at all
                fsync_dir(self.adapters_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return version

    # ----- reading ----------------------------------------------------------------------------------------------
    def path(self, version: str) -> Path:
        """The directory of `version` (which must exist); an unknown version lists the known ones."""
        version_number(version)  # raises for a malformed name before it touches the file system
        directory = self.adapters_dir / version
        if not directory.is_dir():
            raise StoreError(f"unknown version {version!r}; stored: {self.versions() or 'none'}")
        return directory

    def versions(self) -> list[str]:
        if not self.adapters_dir.is_dir():
            return []
        found = [p.name for p in self.adapters_dir.iterdir() if p.is_dir() and is_store_version(p.name)]
        return sorted(found, key=version_number)

    def manifest(self, version: str) -> Manifest:
        directory = self.path(version)
        if not (directory / MANIFEST).is_file():
            raise StoreError(f"adapter {version}: {MANIFEST} is missing in {directory}")
        manifest = read_manifest(directory)
        if manifest.version != version:
            raise StoreError(f"{directory / MANIFEST}: manifest says version {manifest.version!r} but lives in "
                             f"{version!r}")
        return manifest

    def pointers(self) -> dict[str, str | None]:
        if not self.pointers_file.exists():
            return {"current": None, "previous": None}
        data = read_json(self.pointers_file)
        if not isinstance(data, dict):
            raise StoreError(f"{self.pointers_file}: expected a JSON object")
        return {"current": data.get("current"), "previous": data.get("previous")}

    def current(self) -> str | None:
        return self.pointers()["current"]

    def previous(self) -> str | None:
        return self.pointers()["previous"]

    def current_path(self) -> Path | None:
        """The current adapter directory (what the daemon loads), or None to run the bare base model."""
        version = self.current()
        return None if version is None else self.path(version)

    def list(self) -> list[AdapterEntry]:
        """Every stored adapter, oldest first; an unreadable manifest is reported in `error`, not raised."""
        pointers = self.pointers()
        entries = []
        for version in self.versions():
            manifest, error = None, None
            try:
                manifest = self.manifest(version)
            except StoreError as exc:
                error = str(exc)
            entries.append(AdapterEntry(version, self.adapters_dir / version, manifest,
                                        version == pointers["current"], version == pointers["previous"], error))
        return entries

    # ----- verification ---------------------------------------------------------------------------------------------
    def verify(self, version: str) -> Manifest:
        """Check `version` is safe to load: manifest, adapter files, base identity, every weights sha256."""
        directory = self.path(version)
        manifest = self.manifest(version)
        check_adapter_dir(directory)
        base = self._require_base()
        if manifest.base != base["identity"]:
            raise StoreError(f"adapter {version} belongs to base {manifest.base}, "
                             f"but the store's base is {base['identity']} ({base['path']})")
        on_disk = {p.name for p in directory.glob("*.safetensors")}
        unlisted = sorted(on_disk - set(manifest.weights))
        if unlisted:
            raise StoreError(f"adapter {version}: weights file(s) {unlisted} are not in the manifest")
        for name, expected in sorted(manifest.weights.items()):
            self._check_weights_file(version, directory / name, expected)
        listing = export_listing(manifest.extra)
        if listing is not None:
            verify_export(version, directory, listing)
        return manifest

    def export_path(self, version: str) -> Path | None:
        """The ONNX export stored with `version` (what the onnx backend serves), or None when it has none.
        `verify(version)` checks its files."""
        listing = export_listing(self.manifest(version).extra)
        return None if listing is None else self.path(version) / str(listing.get("dir", EXPORT_DIR))

    def _check_weights_file(self, version: str, path: Path, expected: str) -> None:
        if path.suffix != ".safetensors":
            raise StoreError(f"adapter {version}: manifest lists {path.name}, only safetensors are accepted")
        if not path.is_file():
            raise StoreError(f"adapter {version}: weights file {path} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise StoreError(f"adapter {version}: {path} is corrupt: sha256 {actual} does not match the "
                             f"manifest's {expected}")

    # ----- switching ------------------------------------------------------------------------------------------------
    def promote(self, version: str) -> dict[str, str | None]:
        """Make `version` current and the old current previous (after verifying `version`)."""
        with self._locked():
            self.verify(version)
            pointers = self.pointers()
            if pointers["current"] == version:
                return pointers
            return self._switch(current=version, previous=pointers["current"])

    def rollback(self) -> dict[str, str | None]:
        """Swap current and previous (after verifying previous): undoes the last promote. After the first promote
        the previous is the bare base model (None), so rolling back serves the base again (and a second rollback
        undoes that)."""
        with self._locked():
            pointers = self.pointers()
            if pointers["previous"] is None and pointers["current"] is None:
                raise StoreError("nothing to roll back to: the base model serves and no version was ever promoted")
            if pointers["previous"] is not None:
                self.verify(pointers["previous"])
            return self._switch(current=pointers["previous"], previous=pointers["current"])

    def _switch(self, current: str | None, previous: str | None) -> dict[str, str | None]:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.pointers_file, {"current": current, "previous": previous, "switched_at": utc_now()})
        self._mirror_link("current", current)
        self._mirror_link("previous", previous)
        return {"current": current, "previous": previous}

    def _mirror_link(self, name: str, version: str | None) -> None:
        """Point `models/{name}` at the adapter (replace a symlink atomically); remove it for None."""
        link = self.root / name
        if version is None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            return
        tmp = self.root / f".{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(Path("adapters") / version, tmp)
        os.replace(tmp, link)

    # ----- helpers --------------------------------------------------------------------------------------------------
    def _require_base(self) -> dict[str, str]:
        base = self.base()
        if base is None:
            raise StoreError(f"the store at {self.root} has no base model recorded (set one with set_base)")
        return base

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock so that concurrent CLI calls and recalibration runs switch one at a time."""
        self.root.mkdir(parents=True, exist_ok=True)
        # read-only is enough for flock, and works when root created the lock file and the service user locks it
        fd = os.open(self.root / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
