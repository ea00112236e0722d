"""Training-side families: a command runs the model family's own step, or says the family has none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from finetune.families import KITS, kit_of_model, lora_trainer, refuse_adapter_export


def test_florence2_keeps_the_commands_own_path_and_paligemma2_brings_its_finetune(
        tiny_model_dir: Path, tiny_paligemma_dir: Path) -> None:
    assert lora_trainer(tiny_model_dir) is None
    assert lora_trainer(tiny_paligemma_dir) is KITS["paligemma2"].lora_finetune
    assert kit_of_model(tiny_paligemma_dir).title == "PaliGemma 2"


def test_a_family_without_a_step_says_so(tiny_paligemma_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"is a PaliGemma 2 model \(paligemma2 family\), which has no ONNX export"):
        refuse_adapter_export(tiny_paligemma_dir)


def test_a_model_type_no_family_claims_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="model_type 'llava' belongs to no model family"):
        kit_of_model(tmp_path)


def test_export_onnx_of_a_paligemma_model_is_refused_with_the_reason(tiny_paligemma_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "onnx", "--model", str(tiny_paligemma_dir), "--out",
                                      str(tmp_path / "onnx")])
    assert result.exit_code == 2
    assert "has no ONNX export (serve it with a torch backend, e.g. torch-eager)" in result.stderr
    assert not (tmp_path / "onnx").exists()
