"""The adapter a run writes (PEFT layout + manifest the model store takes) and the parent it records."""

from __future__ import annotations

import json
from pathlib import Path

from agent.store.files import base_identity
from finetune.train.adapter_io import adapter_version, write_adapter
from tests.finetune.lora_helpers import FakeAdapterModel


def test_the_adapter_and_its_manifest_replace_an_earlier_output(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "manifest.json").write_text('{"stale": true}')
    manifest = write_adapter(FakeAdapterModel(), out, tiny_model_dir, "sha256:data", "v0001", {"steps": 4})
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["base"] == base_identity(tiny_model_dir) and manifest["parent"] == "v0001"
    assert manifest["data_hash"] == "sha256:data" and manifest["metrics"] == {"steps": 4}
    assert set(manifest["weights"]) == {"adapter_model.safetensors"}
    assert {p.name for p in out.iterdir()} == {"adapter_config.json", "adapter_model.safetensors", "manifest.json"}


def test_the_parent_is_the_version_of_the_adapter_training_starts_from(tmp_path: Path) -> None:
    assert adapter_version(None) is None
    assert adapter_version(tmp_path / "no-manifest") == "no-manifest"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "manifest.json").write_text(json.dumps({"version": "v0007"}))
    assert adapter_version(adapter) == "v0007"
