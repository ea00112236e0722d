"""Model store under `{state_dir}/models/`: the base model reference, versioned LoRA adapters, current/previous.

Layout::

    models/
      base.json              {"path": ..., "identity": "sha256:..."}  which base model the adapters belong to
      adapters/v0001/        adapter_config.json, adapter_model.safetensors, manifest.json
      adapters/v0002/ ...
      pointers.json          {"current": "v0002", "previous": "v0001", "switched_at": ...}  (the truth)
      current -> adapters/v0002   symlinks mirroring pointers.json, so a config can name `models/current`
      previous -> adapters/v0001

A switch (`promote`, `rollback`) writes `pointers.json` to a temporary file and `os.replace`s it: current and
previous change together in one atomic rename, so a power cut leaves either the old or the new pair, never a mix.
Every adapter is verified (manifest present, base identity, sha256 of each weights file) before it becomes current.
Only safetensors are accepted: a directory holding pickle-based weights (`.bin`, `.pt`, ...) is refused outright.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Pickle-based formats can run code when loaded: never accepted, whatever they are called.
FORBIDDEN_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})
_VERSION = re.compile(r"^v(\d{4,})$")
_MANIFEST_FIELDS = ("version", "parent", "base", "data_hash", "metrics", "thresholds", "weights", "created_at")


class StoreError(RuntimeError):
    """A store operation that cannot be done; the message names the version, file or value at fault."""


@dataclass(frozen=True)
class Manifest:
    """What `manifest.json` in each adapter directory records."""

    version: str
    parent: str | None
    base: str  # identity of the base model the adapter was trained on (see `base_identity`)
    data_hash: str | None
    metrics: dict[str, Any]
    thresholds: dict[str, float]
    weights: dict[str, str]  # weights file name -> sha256 hex
    created_at: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: Path) -> Manifest:
        missing = [name for name in _MANIFEST_FIELDS if name not in data]
        if missing:
            raise StoreError(f"{where}: manifest lacks field(s) {missing}")
        if not isinstance(data["weights"], dict) or not data["weights"]:
            raise StoreError(f"{where}: manifest 'weights' must map each weights file to its sha256")
        known = {name: data[name] for name in _MANIFEST_FIELDS}
        extra = {key: value for key, value in data.items() if key not in _MANIFEST_FIELDS}
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class AdapterEntry:
    """One row of `list()`: a stored adapter, its manifest (None when unreadable) and its role."""

    version: str
    path: Path
    manifest: Manifest | None
    current: bool
    previous: bool
    error: str | None = None


# ----- hashing and checks (usable without a store, e.g. by the trainer writing a manifest) -------------------------
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


class ModelStore:
    """Versioned adapters on top of one base model, with an atomically switched current/previous pair."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.adapters_dir = self.root / "adapters"
        self.pointers_file = self.root / "pointers.json"
        self.base_file = self.root / "base.json"

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> ModelStore:
        return cls(Path(state_dir) / "models")

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
    ) -> str:
        """Copy the PEFT adapter in `src` into the store under the next version; returns that version.

        The store needs a base (`set_base`). `parent` defaults to the current version. A `manifest.json` already in
        `src` (written by the trainer) supplies fields not given here; its `base`, if any, must match the store's.
        """
        src = Path(src)
        check_adapter_dir(src)
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
            "extra": {**given.get("extra", {}), **dict(extra or {})},
        }
        return self._install(src, base["identity"], fields)

    def _src_manifest_fields(self, src: Path) -> dict[str, Any]:
        path = src / MANIFEST
        if not path.exists():
            return {}
        data = read_json(path)
        if not isinstance(data, dict):
            raise StoreError(f"{path}: expected a JSON object")
        known = {"base", "parent", "data_hash", "metrics", "thresholds"}
        skip = known | {"version", "weights", "created_at"}
        fields = {key: data[key] for key in known if key in data}
        fields["extra"] = {key: value for key, value in data.items() if key not in skip}
        return fields

    def _install(self, src: Path, base: str, fields: dict[str, Any]) -> str:
        self.adapters_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.adapters_dir))
        try:
            for path in sorted(src.iterdir()):
                if path.is_file() and path.name != MANIFEST:
                    shutil.copy2(path, staging / path.name)
            weights = weights_digests(staging)
            with self._locked():
                version = self._next_version()
                manifest = Manifest(version=version, base=base, weights=weights, created_at=utc_now(), **fields)
                write_json_atomic(staging / MANIFEST, manifest.to_json())
                os.rename(staging, self.adapters_dir / version)  # atomic: the version appears complete or not at all
                fsync_dir(self.adapters_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return version

    def _next_version(self) -> str:
        numbers = [int(m.group(1)) for p in self.adapters_dir.iterdir() if (m := _VERSION.match(p.name))]
        return f"v{max(numbers, default=0) + 1:04d}"

    # ----- reading ----------------------------------------------------------------------------------------------
    def path(self, version: str) -> Path:
        """The directory of `version` (which must exist); an unknown version lists the known ones."""
        if not _VERSION.match(version):
            raise StoreError(f"invalid version {version!r}: expected v followed by digits, e.g. v0003")
        directory = self.adapters_dir / version
        if not directory.is_dir():
            raise StoreError(f"unknown version {version!r}; stored: {self.versions() or 'none'}")
        return directory

    def versions(self) -> list[str]:
        if not self.adapters_dir.is_dir():
            return []
        found = [p.name for p in self.adapters_dir.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def manifest(self, version: str) -> Manifest:
        path = self.path(version) / MANIFEST
        if not path.is_file():
            raise StoreError(f"adapter {version}: {MANIFEST} is missing in {path.parent}")
        data = read_json(path)
        if not isinstance(data, dict):
            raise StoreError(f"{path}: expected a JSON object")
        manifest = Manifest.from_json(data, path)
        if manifest.version != version:
            raise StoreError(f"{path}: manifest says version {manifest.version!r} but lives in {version!r}")
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
        return manifest

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
        """Swap current and previous (after verifying previous): undoes the last promote."""
        with self._locked():
            pointers = self.pointers()
            if pointers["previous"] is None:
                raise StoreError("nothing to roll back to: no previous version is recorded")
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
