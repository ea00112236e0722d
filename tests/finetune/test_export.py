"""ONNX export: three graphs + everything the runtime needs; the adapter is merged; INT8 is smaller; bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from agent.cli import app
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.onnx import OnnxDetector
from finetune.export import GRAPHS, ExportError, export_onnx, split_prompt
from tests.agent.detector.test_florence2 import random_frames
from tests.fixtures.models import make_adapter

OPTIONS = DetectorOptions(max_new_tokens=30)


def graph_bytes(export_dir: Path) -> int:
    return sum((export_dir / f"{g}.onnx").stat().st_size for g in GRAPHS)


def test_cli_writes_fp32_and_int8_exports_and_int8_is_smaller(tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    for precision in ("fp32", "int8"):
        result = runner.invoke(app, ["export", "onnx", "--model", str(tiny_model_dir), "--out",
                                     str(tmp_path / precision), "--precision", precision])
        assert result.exit_code == 0, result.output
        assert f"({precision}," in result.output
    for precision in ("fp32", "int8"):
        out = tmp_path / precision
        for graph in GRAPHS:
            onnx.checker.check_model(str(out / f"{graph}.onnx"))
        manifest = json.loads((out / "export.json").read_text())
        assert manifest["precision"] == precision and manifest["class_names"] == ["scratch", "hole", "stain"]
        assert (out / "tokenizer.json").is_file() and (out / "classes.txt").is_file()
    assert graph_bytes(tmp_path / "int8") < 0.8 * graph_bytes(tmp_path / "fp32")


def test_int8_graphs_hold_integer_matmuls(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = export_onnx(tiny_model_dir, tmp_path / "int8", precision="int8")
    ops = {node.op_type for node in onnx.load(str(out / "decoder_model_with_past.onnx")).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops


def test_the_adapter_is_merged_into_the_exported_graphs(tiny_model_dir: Path, tmp_path: Path) -> None:
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    out = export_onnx(tiny_model_dir, tmp_path / "tuned", adapter=adapter)
    frames = random_frames(3, seed=4)
    tuned = Florence2Detector(tiny_model_dir, adapter=adapter, options=OPTIONS)
    onnx_detector = OnnxDetector(out, options=OPTIONS)
    assert onnx_detector.version == tuned.version
    expected, _ = tuned.generate(tuned.preprocess(frames))
    actual, _ = onnx_detector.generate(onnx_detector.preprocess(frames))
    np.testing.assert_array_equal(actual, expected.numpy())


def test_an_unknown_precision_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="'int4'"):
        export_onnx(tiny_model_dir, tmp_path / "x", precision="int4")


def test_cli_reports_a_missing_model_with_exit_code_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "onnx", "--model", str(tmp_path / "none"), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 2 and str(tmp_path / "none") in result.output


def test_a_prompt_without_leading_image_tokens_is_refused() -> None:
    assert split_prompt(torch.tensor([[9, 9, 9, 0, 5, 2]]), 9) == (3, [0, 5, 2])
    with pytest.raises(ExportError, match="not one leading run"):
        split_prompt(torch.tensor([[0, 9, 9, 2]]), 9)
