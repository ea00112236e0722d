"""ONNX exports stored with an adapter version (onnx lines): installed in the same atomic step, listed and checked
like the weights, re-stamped with the store version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.store.files import StoreError
from tests.agent.store.helpers import make_adapter, new_store


def make_export(folder: Path, version: str = "tiny+run-20250101T000000Z") -> Path:
    folder.mkdir(parents=True)
    (folder / "export.json").write_text(json.dumps({"version": version, "precision": "fp16"}))
    for graph in ("vision_encoder", "encoder_model", "decoder_model_with_past"):
        (folder / f"{graph}.onnx").write_bytes(graph.encode())
    return folder


def test_an_export_is_installed_with_the_version_listed_and_stamped(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    version = store.add_adapter(make_adapter(tmp_path / "a"), onnx_export=make_export(tmp_path / "export"))
    export = store.export_path(version)
    assert export == store.path(version) / "onnx"
    assert json.loads((export / "export.json").read_text())["version"] == f"tiny+{version}"
    listing = store.manifest(version).extra["onnx"]
    assert listing["precision"] == "fp16" and set(listing["files"]) == {
        "export.json", "vision_encoder.onnx", "encoder_model.onnx", "decoder_model_with_past.onnx"}
    store.promote(version)  # verified, export included


def test_an_adapter_folder_carrying_its_export_brings_it_along(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    adapter = make_adapter(tmp_path / "candidate")
    make_export(adapter / "onnx")
    version = store.add_adapter(adapter)
    assert store.export_path(version) == store.path(version) / "onnx"


def test_without_an_export_there_is_none(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    assert store.export_path(store.add_adapter(make_adapter(tmp_path / "a"))) is None


def test_a_corrupt_or_missing_export_file_fails_verification(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    version = store.add_adapter(make_adapter(tmp_path / "a"), onnx_export=make_export(tmp_path / "export"))
    graph = store.path(version) / "onnx" / "encoder_model.onnx"
    graph.write_bytes(b"rot")
    with pytest.raises(StoreError, match="encoder_model.onnx is corrupt"):
        store.promote(version)
    graph.unlink()
    with pytest.raises(StoreError, match="encoder_model.onnx is missing"):
        store.verify(version)
    assert store.current() is None


def test_a_folder_that_is_no_export_is_refused(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="is not an ONNX export"):
        store.add_adapter(make_adapter(tmp_path / "a"), onnx_export=tmp_path / "empty")
    assert store.versions() == []
