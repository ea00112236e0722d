"""One manifest type, writer and version scheme for the trainer and the store; older manifests read unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.store.files import StoreError, base_identity, sha256_file
from agent.store.manifest import (
    Manifest,
    adapter_label,
    next_version,
    read_manifest,
    version_number,
    write_manifest,
)
from agent.store.model_store import ModelStore
from tests.agent.store.helpers import make_adapter

# a manifest exactly as the store wrote it before `run_id` existed
OLD_STORE_MANIFEST = {"version": "v0001", "parent": None, "base": "sha256:b", "data_hash": None,
                      "metrics": {"map": 0.5}, "thresholds": {"hole": 0.4}, "weights": {"a.safetensors": "00"},
                      "created_at": "2025-01-31T12:00:00.000Z", "recalibration_run": "20250131T115900000000Z"}


def test_the_trainer_writes_no_version_but_its_run_id(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "out")
    written = write_manifest(adapter, version=None, base="sha256:b", parent="v0003", data_hash="sha256:d",
                             metrics={"steps": 4}, thresholds={"hole": 1}, run_id="run-20250131T120000Z")
    on_disk = json.loads((adapter / "manifest.json").read_text())
    assert on_disk["version"] is None and on_disk["run_id"] == "run-20250131T120000Z"
    assert on_disk["weights"] == {"adapter_model.safetensors": sha256_file(adapter / "adapter_model.safetensors")}
    assert read_manifest(adapter) == written and written.thresholds == {"hole": 1.0}
    assert adapter_label(adapter) == "run-20250131T120000Z"


def test_the_store_assigns_the_version_and_keeps_the_run_id(store: ModelStore, tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "out")
    write_manifest(adapter, version=None, base=base_identity(tmp_path / "base"), data_hash="sha256:d",
                   metrics={"steps": 4}, run_id="run-20250131T120000Z", extra={"epochs": 2})
    version = store.add_adapter(adapter)
    manifest = store.manifest(version)
    assert (manifest.version, manifest.run_id, manifest.data_hash) == ("v0001", "run-20250131T120000Z", "sha256:d")
    assert manifest.extra == {"epochs": 2} and adapter_label(store.path(version)) == "v0001"


def test_a_manifest_from_before_run_id_reads_and_prints_unchanged(tmp_path: Path) -> None:
    manifest = Manifest.from_json(OLD_STORE_MANIFEST, tmp_path / "manifest.json")
    assert manifest.run_id is None and manifest.extra == {"recalibration_run": "20250131T115900000000Z"}
    assert manifest.to_json() == OLD_STORE_MANIFEST


def test_an_older_trainer_manifest_is_still_labelled_by_its_run_version(tmp_path: Path) -> None:
    adapter = make_adapter(tmp_path / "old", manifest={"version": "run-20240101T000000Z", "parent": None})
    assert adapter_label(adapter) == "run-20240101T000000Z"
    assert adapter_label(make_adapter(tmp_path / "bare")) == "bare"


def test_versions_count_up_from_the_highest_stored() -> None:
    assert next_version([]) == "v0001"
    assert next_version(["v0002", "v0010", ".incoming-x", "current"]) == "v0011"
    assert version_number("v12345") == 12345
    with pytest.raises(StoreError, match="invalid version 'run-1'"):
        version_number("run-1")


def test_a_manifest_lacking_fields_is_refused_naming_them(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"lacks field\(s\) \['weights', 'created_at'\]"):
        Manifest.from_json({k: v for k, v in OLD_STORE_MANIFEST.items() if k not in ("weights", "created_at")},
                           tmp_path / "manifest.json")
