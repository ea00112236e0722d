"""onnx backend: ONNX Runtime (CPU EP here) reproduces torch-eager: exact tokens in FP32, close boxes in FP16/INT8."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.detections import Detections, box_iou
from agent.detector.base import DetectorError
from agent.detector.factory import create_detector
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from agent.detector.onnx import OnnxDetector
from agent.detector.tasks import GROUNDING, TaskUnsupported, run_task_on
from finetune.export import export_onnx_precisions

FREE = DetectorOptions(max_new_tokens=40)
FORCED = DetectorOptions(max_new_tokens=40, min_boxes=4, max_boxes=4)


def random_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (rng.integers(64, 300), rng.integers(64, 300), 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def exports(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx")
    return export_onnx_precisions(tiny_model_dir, {p: root / p for p in ("fp32", "fp16", "int8")})  # one trace


@pytest.fixture(scope="module", params=[FREE, FORCED], ids=["free", "forced-4-boxes"])
def options(request: pytest.FixtureRequest) -> DetectorOptions:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def eager(tiny_model_dir: Path, options: DetectorOptions) -> Florence2Detector:
    return Florence2Detector(tiny_model_dir, options=options)


@pytest.mark.parametrize("batch", [1, 4])
def test_fp32_tokens_equal_torch_eager(exports: dict[str, Path], eager: Florence2Detector,
                                       options: DetectorOptions, batch: int) -> None:
    onnx = OnnxDetector(exports["fp32"], options=options)
    frames = random_frames(batch, seed=batch)
    eager_tokens, _ = eager.generate(eager.preprocess(frames))
    onnx_tokens, _ = onnx.generate(onnx.preprocess(frames))
    np.testing.assert_array_equal(onnx_tokens, eager_tokens.numpy())


def test_fp32_boxes_and_scores_equal_torch_eager(exports: dict[str, Path], eager: Florence2Detector,
                                                 options: DetectorOptions) -> None:
    frames = random_frames(4, seed=7)
    for e, o in zip(eager.detect(frames), OnnxDetector(exports["fp32"], options=options).detect(frames)):
        assert o.labels == e.labels
        np.testing.assert_array_equal(o.xyxy, e.xyxy)
        np.testing.assert_allclose(o.score, e.score, atol=1e-3)


def assert_close_detections(expected: list[Detections], actual: list[Detections]) -> None:
    """Same boxes in the same order with IoU >= 0.9, same classes, scores within 0.05.

    A random model writes many zero-area boxes (IoU 0 even with itself): those must be equal instead.
    """
    for e, a in zip(expected, actual, strict=True):
        assert a.labels == e.labels
        if len(e):
            equal = np.isclose(e.xyxy, a.xyxy, atol=1e-3).all(axis=1)
            assert (equal | (np.diag(box_iou(e.xyxy, a.xyxy)) >= 0.9)).all()
            np.testing.assert_allclose(a.score, e.score, atol=0.05)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_boxes_stay_close_to_torch_eager(exports: dict[str, Path], eager: Florence2Detector,
                                                           options: DetectorOptions, precision: str) -> None:
    frames = random_frames(4, seed=11)
    onnx = OnnxDetector(exports[precision], options=options)
    assert onnx.precision == precision
    assert_close_detections(eager.detect(frames), onnx.detect(frames))


def test_the_factory_builds_the_onnx_backend_from_an_export(exports: dict[str, Path]) -> None:
    detector = create_detector("onnx", exports["fp32"], device="cpu", max_new_tokens=30)
    assert isinstance(detector, OnnxDetector) and detector.providers == ["CPUExecutionProvider"]
    assert len(detector.detect(random_frames(2))) == 2


def test_an_adapter_for_the_onnx_backend_points_to_the_export_command(exports: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="edge-inspect export onnx"):
        create_detector("onnx", exports["fp32"], adapter=tmp_path / "adapter", device="cpu")


def test_a_plain_model_directory_is_refused_with_the_export_command(tiny_model_dir: Path) -> None:
    with pytest.raises(DetectorError, match=f"{tiny_model_dir} is not an ONNX export"):
        OnnxDetector(tiny_model_dir)


def test_a_missing_graph_is_named(exports: dict[str, Path], tmp_path: Path) -> None:
    broken = shutil.copytree(exports["fp32"], tmp_path / "broken")
    (broken / "decoder_model_with_past.onnx").unlink()
    with pytest.raises(DetectorError, match="lacks decoder_model_with_past.onnx"):
        OnnxDetector(broken)


def test_other_class_names_than_the_exported_ones_are_refused(exports: dict[str, Path]) -> None:
    exported = json.loads((exports["fp32"] / "export.json").read_text())["class_names"]
    with pytest.raises(DetectorError, match="export again"):
        OnnxDetector(exports["fp32"], class_names=[*exported, "dent"])


def test_region_tasks_are_refused_with_what_to_serve_instead(exports: dict[str, Path], tmp_path: Path) -> None:
    detector = create_detector("onnx", exports["fp32"])
    with pytest.raises(TaskUnsupported, match="backend 'onnx' runs <OD> only.* serve the model on torch-eager"):
        run_task_on(detector, random_frames(1), GROUNDING, "scratch")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), random_frames(1)[0])
    result = CliRunner().invoke(app, ["detect", "--backend", "onnx", "--model", str(exports["fp32"]), str(image),
                                      "--task", "phrase-grounding", "--phrase", "scratch"])
    assert result.exit_code == 2 and "cannot run phrase-grounding" in result.output
