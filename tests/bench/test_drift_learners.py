"""The drift-learner bench (`bench/drift_learners.py`) trains exactly what each learner names, from the demo model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bench.drift_learners import main, parse_args, run

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"
SMALL = ["--labels", "4", "--steps", "2", "--held-out", "2", "--model", str(DEMO), "--threads", "1"]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_parts_trains_the_named_parts_and_leaves_the_rest_as_it_was(tmp_path: Path) -> None:
    row = run(parse_args(["--learner", "parts", "--parts", "vision_tower", *SMALL]), tmp_path)
    before, after = weights(DEMO), weights(tmp_path / "model")
    changed = {name.split(".")[1] for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"vision_tower"}
    assert row["trainable_parameters"] > sum(t.numel() for n, t in before.items() if ".vision_tower." in n)  # + heads


def test_whole_trains_the_adapter_recalibration_lora_whole_makes(tmp_path: Path) -> None:
    run(parse_args(["--learner", "whole", "--parts", "vision_tower", "--r", "4", *SMALL]), tmp_path)
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    demo = weights(DEMO)
    carried = {name.removeprefix("base_model.model.") for name in saved if ".vision_tower." in name}
    assert carried == {name for name in demo if ".vision_tower." in name}  # the whole tower, every weight
    assert any("lora_A" in name and "language_model" in name for name in saved)
    assert not any("lora_A" in name and "vision_tower" in name for name in saved)


def test_each_run_is_appended_to_the_results_file(tmp_path: Path) -> None:
    out = tmp_path / "runs.json"
    for _ in range(2):
        main(["--learner", "full", "--out", str(out), *SMALL])
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == 2 and set(runs[0]["map50"]) == {"drifted", "original", "trained_drifted"}


def test_an_unknown_learner_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--learner", "adapter"])
