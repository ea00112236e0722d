"""The `maskrcnn` family end to end through the command line: tiny -> finetune -> evaluate (bbox and segm mAP) ->
export onnx -> the onnx backend agrees with torch-eager. The daemon on this model: tests/agent/test_daemon_maskrcnn.py.

The recall asserted is what the tiny model (MobileNetV3-small, 300 steps of batch 4 from random initialisation on 96
synthetic 128 px frames) reaches on 24 held-out frames, measured at score >= 0.3 and box IoU >= 0.5: every hole and
about 70 % of the stains. It does not learn the scratches (1-2 px wide lines at this size) in that budget, and the
test does not pretend it does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.maskrcnn import TRAIN_STEPS, TrainedMaskRcnn, cli

pytestmark = pytest.mark.slow


def test_finetune_writes_a_whole_model_directory_with_progress_lines(trained_maskrcnn: TrainedMaskRcnn) -> None:
    model = trained_maskrcnn.model
    assert {p.name for p in model.iterdir()} >= {"config.json", "model.safetensors", "classes.txt", "training.json"}
    assert json.loads((model / "config.json").read_text())["model_type"] == "edge-inspect-maskrcnn"
    history = json.loads((model / "training.json").read_text())
    assert history["steps"] == TRAIN_STEPS and history["scales"] == [96, 128, 160]
    assert f"step 10/{TRAIN_STEPS} loss" in trained_maskrcnn.finetune_stderr
    first, last = history["history"][:20], history["history"][-20:]
    assert np.mean([h["loss"] for h in last]) < 0.7 * np.mean([h["loss"] for h in first])


def test_evaluate_reports_box_and_mask_map_and_the_defects_are_found(trained_maskrcnn: TrainedMaskRcnn,
                                                                     tmp_path: Path) -> None:
    done = cli("evaluate", "--model", str(trained_maskrcnn.model), "--data", str(trained_maskrcnn.val),
               "--format", "coco", "--out", str(tmp_path / "report"), "--thresholds", "0.3", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mask mAP" in done.stdout
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["map50"] > 0.3 and metrics["segm"]["map50"] > 0.3
    recall = {name: point["recall"] for name, point in metrics["operating_point"].items()}
    assert recall["hole"] >= 0.8 and recall["stain"] >= 0.5, recall


def test_onnx_export_serves_and_agrees_with_torch_eager(trained_maskrcnn: TrainedMaskRcnn, tmp_path: Path) -> None:
    from agent.detector.factory import create_detector
    from agent.detector.families import family_of
    from agent.imageio import read_image
    from finetune.data.coco import read_coco

    out = tmp_path / "export"
    done = cli("export", "onnx", "--model", str(trained_maskrcnn.model), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert family_of(out) == "maskrcnn"
    assert json.loads((out / "export.json").read_text())["input_size"] == [128, 128]
    eager = create_detector("torch-eager", trained_maskrcnn.model, device="cpu")
    onnx = create_detector("onnx", out, device="cpu")
    frames = [read_image(s.image) for s in read_coco(trained_maskrcnn.val).samples[:8]]
    compared = 0
    for mine, theirs in zip(eager.detect(frames), onnx.detect(frames), strict=True):
        mine, theirs = mine[mine.score >= 0.2], theirs[theirs.score >= 0.2]
        assert len(mine) == len(theirs)
        np.testing.assert_allclose(theirs.xyxy, mine.xyxy, atol=0.5)  # pixels
        np.testing.assert_allclose(theirs.score, mine.score, atol=1e-3)
        assert (theirs.class_id == mine.class_id).all()
        for a, b in zip(mine.mask, theirs.mask, strict=True):
            assert (a & b).sum() >= 0.95 * (a | b).sum()  # mask IoU
        compared += len(mine)
    assert compared > 0
