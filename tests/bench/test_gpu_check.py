"""bench/gpu_check.py: the dry run of every stage on the CPU (so the script cannot rot before a GPU is lent), and the
stage runner's promises: a failing, hanging or late stage is recorded with the reason and the check goes on."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from agent.detections import Detections
from bench import gpu_check
from bench.gpu_stages import Skip, compare, published_builder, run_boxed
from tests.bench.test_gpu_wheels import GPU_BOX, project_dependencies

REPO = Path(__file__).resolve().parents[2]


# ----- the stage runner ---------------------------------------------------------------------------------------------
def _sleep(seconds: float) -> dict[str, Any]:
    Path(os.environ["GPU_CHECK_TEST_PIDFILE"]).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {"slept": seconds}


def _boom(_plan: dict[str, Any]) -> dict[str, Any]:
    raise ValueError("model directory /nowhere does not exist")


def _fine(_plan: dict[str, Any]) -> dict[str, Any]:
    return {"answer": 42}


def _skip(_plan: dict[str, Any]) -> dict[str, Any]:
    raise Skip("nothing to do here")


def _nap(_plan: dict[str, Any]) -> dict[str, Any]:
    time.sleep(2.0)
    return {}


def test_a_stage_past_its_time_box_is_stopped_and_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_CHECK_TEST_PIDFILE", str(tmp_path / "pid"))
    result = run_boxed(_sleep, 60.0, 5.0, tmp_path / "r.json", new_group=True)
    assert result["status"] == "timeout" and "time box of 5 s" in result["error"] and result["seconds"] < 30
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, not left running


def test_a_stage_that_finishes_returns_its_dict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_CHECK_TEST_PIDFILE", str(tmp_path / "pid"))
    result = run_boxed(_sleep, 0.0, 30.0, tmp_path / "r.json")
    assert result["status"] == "ok" and result["slept"] == 0.0 and "time" in result["imported_modules"]


def test_a_stage_can_start_in_a_fresh_interpreter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--spawn: the fallback for a parent that touched CUDA; the stage function travels by reference."""
    monkeypatch.setenv("GPU_CHECK_TEST_PIDFILE", str(tmp_path / "pid"))
    result = run_boxed(_sleep, 0.0, 120.0, tmp_path / "r.json", method="spawn")
    assert result["status"] == "ok" and int((tmp_path / "pid").read_text()) != os.getpid()


def run_stages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stages: dict[str, Any], budget_s: float = 60.0
               ) -> dict[str, dict[str, Any]]:
    monkeypatch.setattr(gpu_check, "STAGES", {name: (fn, 30.0) for name, fn in stages.items()})
    args = argparse.Namespace(stages=list(stages), dry_run=False, budget_s=budget_s)
    plan = {"work_dir": str(tmp_path), "start_method": "fork", "dry_run": True}
    return gpu_check.run_stages(args, plan)


def test_a_failing_stage_is_recorded_and_the_next_one_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = run_stages(monkeypatch, tmp_path, {"boom": _boom, "skip": _skip, "fine": _fine})
    assert results["boom"]["status"] == "failed"
    assert results["boom"]["error"] == "ValueError: model directory /nowhere does not exist"
    assert results["skip"] == {**results["skip"], "status": "skipped", "reason": "nothing to do here"}
    assert results["fine"]["status"] == "ok" and results["fine"]["answer"] == 42


def test_stages_that_need_models_say_why_there_are_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = run_stages(monkeypatch, tmp_path, {"models": _boom, "parity": _fine})
    assert results["parity"]["status"] == "skipped"
    assert "the models stage ended failed: ValueError: model directory /nowhere" in results["parity"]["reason"]


def test_a_stage_left_without_budget_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = run_stages(monkeypatch, tmp_path, {"nap": _nap, "fine": _fine}, budget_s=gpu_check.MIN_STAGE_S + 1)
    assert results["nap"]["status"] == "ok"
    assert results["fine"]["status"] == "skipped" and "budget spent" in results["fine"]["reason"]


def test_unknown_stages_and_a_tiny_budget_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--stages", "parity,warp"])
    assert "unknown stage(s) ['warp']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--budget-s", "3"])
    assert "--budget-s 3 is below" in capsys.readouterr().err


def test_a_missing_published_builder_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "finetune.published", None)  # as on a branch without it
    builder, reason = published_builder()
    assert builder is None and reason is not None and "finetune.published.build_published" in reason


# ----- parity arithmetic --------------------------------------------------------------------------------------------
def dets(scores: list[float], x0: float = 1.0) -> Detections:
    boxes = [[x0 + i, 1.0, x0 + i + 5, 6.0] for i in range(len(scores))]
    return Detections.from_labels(["hole"] * len(scores), boxes, ("scratch", "hole"), (32, 32), scores)


def test_compare_passes_equal_tokens_and_scores_within_the_tolerance() -> None:
    tokens = torch.tensor([[5, 6, 7], [5, 8, 2]])
    row = compare((tokens, [dets([0.5]), dets([0.7])]), (tokens.clone(), [dets([0.5004]), dets([0.7])]), 1e-3)
    assert row["pass"] and row["tokens_equal"] and row["boxes_equal"]
    assert math.isclose(row["max_score_diff"], 0.0004, abs_tol=1e-6)


def test_compare_names_the_first_differing_token_and_fails() -> None:
    expected = (torch.tensor([[5, 6, 7], [5, 8, 2]]), [dets([0.5]), dets([0.7])])
    actual = (torch.tensor([[5, 6, 7], [5, 9, 2]]), [dets([0.5]), dets([0.7], x0=2.0)])
    row = compare(expected, actual, 1e-3)
    assert not row["pass"] and row["first_difference"] == [1, 1] and not row["boxes_equal"]
    assert not compare(expected, (expected[0], [dets([0.5]), dets([0.71])]), 1e-3)["pass"]  # score beyond 1e-3


# ----- the dry run --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_dry_run_runs_every_stage_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run", "--out", str(out), "--work-dir",
                           str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    stages = report["stages"]
    assert {name: s["status"] for name, s in stages.items()} == {name: "ok" for name in gpu_check.STAGES}
    assert stages["parity"]["tiny"]["pass"] and stages["parity"]["published-base"]["status"] == "skipped"
    assert stages["quantize"]["tiny"]["quantized"]["mode"] == "int8-weight"
    assert stages["quantize"]["demo-accuracy"]["int8-weight"]["found"] >= 0
    backends = {r["backend"] for r in stages["detector"]["results"]}
    assert backends == {"torch-eager", "torch-fast", "torch-fast-nograph", "torch-fast-int8"}
    for run in stages["train"]["runs"].values():
        assert run["status"] == "ok" and run["samples_per_s"] > 0 and all(map(math.isfinite, run["losses"]))
    assert stages["pipeline"]["bare_detector_fps"] > 0 and stages["pipeline"]["pipeline"]["bmp"]["frames"] > 0
    needed = {d for d in map(GPU_BOX.normal, report["imported_distributions"]) if d in project_dependencies()}
    assert needed - GPU_BOX.available() == set(), "add these to bench/gpu_wheels.txt"
    assert "[" in done.stdout and "wrote" in done.stdout  # it says where it is as it goes
