"""Model store: versioned adapters with manifests, verified and switched atomically, safetensors only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from agent.store.files import StoreError, base_identity, sha256_file
from agent.store.model_store import ModelStore
from tests.agent.store.helpers import add, make_adapter, make_base


def test_added_adapters_get_increasing_versions_and_a_complete_manifest(store: ModelStore, tmp_path: Path) -> None:
    first = add(store, tmp_path, "a", data_hash="sha256:data", metrics={"map": 0.4}, thresholds={"hole": 0.6})
    second = add(store, tmp_path, "b", value=2.0)

    assert (first, second) == ("v0001", "v0002")
    manifest = store.manifest(first)
    weights = store.path(first) / "adapter_model.safetensors"
    assert manifest.weights == {"adapter_model.safetensors": sha256_file(weights)}
    assert manifest.base == base_identity(tmp_path / "base")
    assert (manifest.parent, manifest.data_hash, manifest.metrics, manifest.thresholds) == (
        None, "sha256:data", {"map": 0.4}, {"hole": 0.6})
    assert manifest.created_at.endswith("Z")
    assert store.versions() == ["v0001", "v0002"]


def test_parent_defaults_to_the_current_version(store: ModelStore, tmp_path: Path) -> None:
    store.promote(add(store, tmp_path, "a"))
    assert store.manifest(add(store, tmp_path, "b")).parent == "v0001"


def test_trainer_manifest_in_the_source_supplies_fields(store: ModelStore, tmp_path: Path) -> None:
    src = make_adapter(tmp_path / "trained", manifest={"data_hash": "sha256:d", "metrics": {"map50": 0.9},
                                                       "epochs": 3, "version": "ignored"})
    manifest = store.manifest(store.add_adapter(src))
    assert (manifest.data_hash, manifest.metrics, manifest.extra) == ("sha256:d", {"map50": 0.9}, {"epochs": 3})
    assert manifest.version == "v0001"


def test_promote_switches_current_and_keeps_previous(store: ModelStore, tmp_path: Path) -> None:
    v1, v2 = add(store, tmp_path, "a"), add(store, tmp_path, "b", 2.0)
    store.promote(v1)
    assert (store.current(), store.previous()) == (v1, None)

    store.promote(v2)

    assert (store.current(), store.previous()) == (v2, v1)
    assert store.current_path() == store.path(v2)
    # the symlinks mirror the pointers so a config can name models/current
    assert (store.root / "current").resolve() == store.path(v2).resolve()
    assert (store.root / "previous").resolve() == store.path(v1).resolve()


def test_rollback_swaps_back_and_twice_restores(store: ModelStore, tmp_path: Path) -> None:
    v1, v2 = add(store, tmp_path, "a"), add(store, tmp_path, "b", 2.0)
    store.promote(v1)
    store.promote(v2)

    store.rollback()
    assert (store.current(), store.previous()) == (v1, v2)
    store.rollback()
    assert (store.current(), store.previous()) == (v2, v1)


def test_rollback_after_the_first_promote_serves_the_base_model_again(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="nothing to roll back to: the base model serves"):
        store.rollback()  # never promoted
    v1 = add(store, tmp_path, "a")
    store.promote(v1)
    store.rollback()
    assert (store.current(), store.previous()) == (None, v1) and store.current_path() is None
    store.rollback()  # and undoing that serves the adapter again
    assert (store.current(), store.previous()) == (v1, None)


def test_switch_is_one_atomic_replace_of_the_pointer_file(
    store: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = add(store, tmp_path, "a"), add(store, tmp_path, "b", 2.0)
    store.promote(v1)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def crash_on_pointer_replace(src: str, dst: str) -> None:
        replaced.append((str(src), str(dst)))
        if str(dst) == str(store.pointers_file):
            raise OSError("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_pointer_replace)
    with pytest.raises(OSError, match="power cut"):
        store.promote(v2)
    monkeypatch.setattr(os, "replace", real_replace)

    # the rename never happened: the old pair is intact and no temporary file is left behind
    assert (store.current(), store.previous()) == (v1, None)
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".pointers")] == []
    assert replaced[0][1] == str(store.pointers_file)


def test_corrupt_weights_are_refused_naming_the_file(store: ModelStore, tmp_path: Path) -> None:
    v1, v2 = add(store, tmp_path, "a"), add(store, tmp_path, "b", 2.0)
    store.promote(v1)
    weights = store.path(v2) / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))

    with pytest.raises(StoreError, match=r"v0002: .*adapter_model\.safetensors is corrupt: sha256"):
        store.promote(v2)
    assert store.current() == v1


def test_missing_manifest_is_refused(store: ModelStore, tmp_path: Path) -> None:
    v1 = add(store, tmp_path, "a")
    (store.path(v1) / "manifest.json").unlink()
    with pytest.raises(StoreError, match=r"v0001: manifest\.json is missing"):
        store.verify(v1)
    assert store.list()[0].error is not None


def test_adapter_for_another_base_is_refused(store: ModelStore, tmp_path: Path) -> None:
    v1 = add(store, tmp_path, "a")
    store.set_base(make_base(tmp_path / "other-base", seed=7))
    with pytest.raises(StoreError, match="belongs to base sha256:.*but the store's base is"):
        store.promote(v1)


def test_source_manifest_from_another_base_is_refused(store: ModelStore, tmp_path: Path) -> None:
    src = make_adapter(tmp_path / "foreign", manifest={"base": "sha256:" + "0" * 64})
    with pytest.raises(StoreError, match="trained on base sha256:0+, but the store's base"):
        store.add_adapter(src)
    assert store.versions() == []


@pytest.mark.parametrize("name", ["adapter_model.bin", "extra.pt", "weights.pth", "x.ckpt"])
def test_pickled_weights_are_refused_on_add(store: ModelStore, tmp_path: Path, name: str) -> None:
    src = make_adapter(tmp_path / "src")
    (src / name).write_bytes(b"\x80\x04pickle")
    with pytest.raises(StoreError, match=rf"{name}: .* weights are refused, only safetensors"):
        store.add_adapter(src)
    assert store.versions() == []


def test_pickled_weights_planted_in_the_store_are_refused_on_promote(store: ModelStore, tmp_path: Path) -> None:
    v1 = add(store, tmp_path, "a")
    (store.path(v1) / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(StoreError, match="only safetensors"):
        store.promote(v1)
    assert store.current() is None


def test_unlisted_safetensors_file_is_refused(store: ModelStore, tmp_path: Path) -> None:
    v1 = add(store, tmp_path, "a")
    save_file({"x": np.zeros(2, dtype=np.float32)}, str(store.path(v1) / "sneaky.safetensors"))
    with pytest.raises(StoreError, match=r"\['sneaky.safetensors'\] are not in the manifest"):
        store.verify(v1)


def test_adapter_without_safetensors_weights_is_refused(store: ModelStore, tmp_path: Path) -> None:
    src = make_adapter(tmp_path / "src")
    (src / "adapter_model.safetensors").unlink()
    with pytest.raises(StoreError, match="has no adapter_model.safetensors"):
        store.add_adapter(src)


def test_base_with_pickled_weights_is_refused(tmp_path: Path) -> None:
    base = make_base(tmp_path / "base")
    (base / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(StoreError, match=r"pytorch_model\.bin: .bin weights are refused"):
        ModelStore(tmp_path / "models").set_base(base)


def test_base_model_is_rehashed_on_demand(store: ModelStore, tmp_path: Path) -> None:
    assert store.verify_base() == base_identity(tmp_path / "base")
    with pytest.raises(StoreError, match="other-base is sha256:.*but the store's adapters belong to"):
        store.verify_base(make_base(tmp_path / "other-base", seed=5))
    save_file({"w": np.full((4, 4), 9, dtype=np.float32)}, str(tmp_path / "base" / "model.safetensors"))
    with pytest.raises(StoreError, match="changed or corrupt weights"):
        store.verify_base()


def test_store_without_base_refuses_adapters(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no base model recorded"):
        ModelStore(tmp_path / "models").add_adapter(make_adapter(tmp_path / "a"))


def test_unknown_version_lists_the_stored_ones(store: ModelStore, tmp_path: Path) -> None:
    add(store, tmp_path, "a")
    with pytest.raises(StoreError, match=r"unknown version 'v0009'; stored: \['v0001'\]"):
        store.promote("v0009")
    with pytest.raises(StoreError, match="invalid version '../etc'"):
        store.path("../etc")


def test_stored_lora_adapter_loads_into_the_detector(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import Florence2ForConditionalGeneration

    from agent.detector.florence2 import Florence2Detector

    model = Florence2ForConditionalGeneration.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(str(tmp_path / "lora"))
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(tiny_model_dir)
    store.promote(store.add_adapter(tmp_path / "lora"))

    detector = Florence2Detector(tiny_model_dir, adapter=store.root / "current")

    assert detector.version.endswith("+v0001")
