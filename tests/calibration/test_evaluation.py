"""Models are judged as the line serves them: the configured backend, device and token budget; on an onnx line
the contender's export (or model.path, the base's export), never an adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import ModelConfig, Settings
from agent.decide import Thresholds
from calibration.evaluation import Contender, line_detector

THRESHOLDS = Thresholds({}, 0.5, 0.1)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def fake_create(backend: str, model: Any, adapter: Any, classes: Any, device: str, max_new_tokens: int,
                    quantize: str = "none") -> Any:
        calls.append((backend, model, adapter, device, max_new_tokens) + ((quantize,) if quantize != "none" else ()))
        return object()

    monkeypatch.setattr("agent.detector.factory.create_detector", fake_create)
    return calls


def settings(tmp_path: Path, backend: Any, quantize: Any = "none") -> Settings:
    (tmp_path / "served").mkdir(exist_ok=True)
    model = ModelConfig(path=tmp_path / "served", backend=backend, device="cpu", max_new_tokens=32, quantize=quantize)
    return Settings(state_dir=tmp_path / "state", model=model)


def test_torch_backends_merge_the_adapter_on_the_base(tmp_path: Path, built: list[tuple[Any, ...]]) -> None:
    for backend in ("torch-eager", "torch-fast"):
        line_detector(settings(tmp_path, backend), tmp_path / "base", Contender("candidate", tmp_path / "a",
                                                                                 THRESHOLDS))
    assert built == [("torch-eager", tmp_path / "base", tmp_path / "a", "cpu", 32),
                     ("torch-fast", tmp_path / "base", tmp_path / "a", "cpu", 32)]


def test_a_quantized_line_judges_the_candidate_quantized_as_it_will_serve(tmp_path: Path,
                                                                          built: list[tuple[Any, ...]]) -> None:
    line_detector(settings(tmp_path, "torch-fast", "int8-weight"), tmp_path / "base",
                  Contender("candidate", tmp_path / "a", THRESHOLDS))
    assert built == [("torch-fast", tmp_path / "base", tmp_path / "a", "cpu", 32, "int8-weight")]


def test_an_onnx_line_runs_the_contenders_export_or_else_its_served_export(tmp_path: Path,
                                                                          built: list[tuple[Any, ...]]) -> None:
    line = settings(tmp_path, "onnx")
    line_detector(line, tmp_path / "base", Contender("candidate", tmp_path / "a", THRESHOLDS, tmp_path / "a" / "onnx"))
    line_detector(line, tmp_path / "base", Contender("current", None, THRESHOLDS))
    assert built == [("onnx", tmp_path / "a" / "onnx", None, "cpu", 32), ("onnx", tmp_path / "served", None, "cpu", 32)]
