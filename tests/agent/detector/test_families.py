"""A model directory names its family; the registry builds that family's backend or names what it knows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.detector.base import DetectorError
from agent.detector.factory import create_detector
from agent.detector.families import DetectorRequest, Family, families, family_of


def test_florence2_is_registered_with_its_three_backends() -> None:
    assert set(families()["florence2"].backends) == {"torch-eager", "torch-fast", "onnx"}


def test_config_model_type_names_the_family(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "florence2"}))
    assert family_of(tmp_path) == "florence2"


def test_hub_id_and_old_export_default_to_florence2(tmp_path: Path) -> None:
    assert family_of("microsoft/Florence-2-base") == "florence2"
    (tmp_path / "export.json").write_text(json.dumps({"precision": "fp32"}))
    assert family_of(tmp_path) == "florence2"


def test_export_manifest_may_name_its_family(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text(json.dumps({"family": "other"}))
    assert family_of(tmp_path) == "other"


def test_unknown_model_type_names_the_file_and_the_known_types(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(DetectorError, match=r"config\.json: model_type 'llama'.*known: .*florence2"):
        family_of(tmp_path)


def test_unreadable_config_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DetectorError, match="config.json is not readable JSON"):
        family_of(tmp_path)


def test_unknown_backend_lists_the_familys_backends(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "florence2"}))
    with pytest.raises(DetectorError, match="unknown detector backend 'tensorrt' for the florence2 family; "
                                            "available: torch-eager, torch-fast, onnx"):
        create_detector("tensorrt", tmp_path)


def test_a_family_builds_through_its_registered_builder() -> None:
    seen: list[DetectorRequest] = []

    def build(request: DetectorRequest) -> object:
        seen.append(request)
        return "detector"

    family = Family("probe", ("probe",), {"cpu": build})  # type: ignore[dict-item]
    assert family.build("cpu", DetectorRequest("m", class_names=("a",))) == "detector"
    assert seen == [DetectorRequest("m", class_names=("a",))]


def test_a_family_that_does_not_quantize_refuses_a_quantized_request() -> None:
    family = Family("probe", ("probe",), {"cpu": lambda request: "detector"})  # type: ignore[dict-item,arg-type,return-value]
    with pytest.raises(DetectorError, match="quantize 'int8-weight': the probe family serves unquantized weights"):
        family.build("cpu", DetectorRequest("m", quantize="int8-weight"))
