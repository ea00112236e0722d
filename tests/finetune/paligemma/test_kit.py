"""The paligemma2 kit through the real commands: model tiny -> data convert -> finetune -> evaluate."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agent.cli import app
from agent.detector.factory import create_detector

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_tiny_then_finetune_on_paligemma_jsonl_then_evaluate_on_both_torch_backends(tmp_path: Path) -> None:
    model, data, pali = tmp_path / "model", tmp_path / "data", tmp_path / "pali"
    invoke("model", "tiny", "--family", "paligemma2", "--classes", "scratch,hole,stain", "--out", str(model),
           "--image-size", "32")
    invoke("data", "synth", "--out", str(data), "--count", "4", "--size", "64")
    assert "as paligemma to" in invoke("data", "convert", str(data), str(pali), "--from", "jsonl", "--to", "paligemma")
    out = invoke("finetune", "--model", str(model), "--data", str(pali), "--format", "paligemma", "--out",
                 str(tmp_path / "adapter"), "--max-steps", "2", "--batch", "2", "--device", "cpu", "--val", str(pali))
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and "val_map50" in summary["metrics"]  # validation ran the family's detector
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    for backend in ("torch-eager", "torch-fast"):
        report = tmp_path / f"report-{backend}"
        out = invoke("evaluate", "--model", str(model), "--adapter", str(tmp_path / "adapter"), "--data", str(data),
                     "--out", str(report), "--backend", backend, "--annotated", "1")
        assert "4 images" in out and "mAP50" in out
        metrics = json.loads((report / "metrics.json").read_text())
        assert metrics["images"] == 4 and 0.0 <= metrics["map50"] <= 1.0


def test_the_adapter_changes_what_the_model_answers(tmp_path: Path, tiny_paligemma_dir: Path) -> None:
    invoke("data", "synth", "--out", str(tmp_path / "data"), "--count", "4", "--size", "64")
    invoke("finetune", "--model", str(tiny_paligemma_dir), "--data", str(tmp_path / "data"), "--out",
           str(tmp_path / "adapter"), "--max-steps", "3", "--batch", "2", "--lr", "0.01", "--device", "cpu")
    from agent.capture.synthetic import SyntheticGenerator

    frame = SyntheticGenerator(seed=0, size=64).frame(0).image
    before = create_detector("torch-eager", tiny_paligemma_dir, max_new_tokens=20).detect([frame])[0]
    after = create_detector("torch-eager", tiny_paligemma_dir, tmp_path / "adapter", max_new_tokens=20).detect([frame])
    assert (before.labels, before.score.tolist()) != (after[0].labels, after[0].score.tolist())
