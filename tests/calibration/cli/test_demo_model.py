"""`edge-inspect model demo`: trains the demo model, writes demo_metrics.json, then fits and writes thresholds.json
(what `edge-inspect demo` reads)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

import calibration.cli.demo_model as demo_model
import finetune.tiny_train.demo as recipe
from agent.cli import app

SHIPPED_DEMO_MODEL = Path(__file__).parents[3] / "models" / "demo"
CLASSES = ["scratch", "hole", "stain"]


def fake_build_demo_model(out_dir: Path, steps: int, seed: int, progress: Any) -> tuple[Any, Any]:
    out_dir.mkdir(parents=True)
    progress(steps, steps, {"loss": 1.5})
    result = SimpleNamespace(steps=steps, seconds=12.34, final={"loss": 1.23456})
    return result, SimpleNamespace(to_dict=lambda: {"precision": 0.5, "recall": 0.25, "seed": seed})


def test_model_demo_trains_then_writes_metrics_and_fitted_thresholds(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fitted: list[tuple[Path, list[str]]] = []

    def fake_fit(model: Path, classes: list[str]) -> dict[str, float]:
        fitted.append((model, classes))
        return {"scratch": 0.11, "hole": 0.5, "stain": 0.07}

    monkeypatch.setattr(recipe, "build_demo_model", fake_build_demo_model)
    monkeypatch.setattr(demo_model, "fit_demo_thresholds", fake_fit)
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["model", "demo", "--out", str(out), "--steps", "3", "--seed", "9"])
    assert result.exit_code == 0, result.output
    summary = {"model": str(out), "steps": 3, "seconds": 12.3, "final_loss": {"loss": 1.2346},
               "unseen_frames": {"precision": 0.5, "recall": 0.25, "seed": 9}}
    assert json.loads(result.stdout.splitlines()[-1]) == summary
    assert json.loads((out / "demo_metrics.json").read_text()) == summary
    assert fitted == [(out, CLASSES)]
    assert json.loads((out / "thresholds.json").read_text()) == {"scratch": 0.11, "hole": 0.5, "stain": 0.07}


@pytest.mark.slow
def test_demo_thresholds_are_fitted_per_class_on_unseen_frames(capsys: pytest.CaptureFixture[str]) -> None:
    thresholds = demo_model.fit_demo_thresholds(SHIPPED_DEMO_MODEL, CLASSES, frames=8)
    assert list(thresholds) == CLASSES and all(0.0 < value <= 1.0 for value in thresholds.values())
    assert "fitting per-class thresholds for recall 0.5 on 8 unseen synthetic frames" in capsys.readouterr().out
