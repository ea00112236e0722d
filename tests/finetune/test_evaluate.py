"""Evaluation of a detector on a data set: COCO mAP from real scores, confusion matrix, false rejects on good
frames, the report files, and the `evaluate` command."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

from agent.capture.synthetic import SyntheticGenerator
from agent.cli import app
from agent.detections import Detections
from agent.imageio import read_image
from finetune.data.dataset import Dataset, Sample
from finetune.evaluate import EvalOptions, evaluate
from finetune.metrics import EvalError, EvalReport, Thresholds

CLASSES = ("scratch", "hole", "stain")
Transform = Callable[[Detections], Detections]


def write_frames(directory: Path, defect_frames: int, good_frames: int, size: int = 96) -> Dataset:
    """Frames with defects (every one has >= 1 box) followed by known-good frames (no boxes), as PNG files."""
    directory.mkdir(parents=True, exist_ok=True)
    defective = SyntheticGenerator(seed=3, size=size, classes=CLASSES, defect_free_fraction=0.0)
    good = SyntheticGenerator(seed=4, size=size, classes=CLASSES, max_defects=0)
    frames = defective.frames(defect_frames) + good.frames(good_frames)
    samples = []
    for i, frame in enumerate(frames):
        path = directory / f"{i:03d}.png"
        cv2.imwrite(str(path), frame.image)
        samples.append(Sample(path, frame.detections))
    return Dataset(CLASSES, samples, root=directory)


class OracleDetector:
    """Answers each frame with its ground truth (score 1.0), passed through `transform`."""

    def __init__(self, dataset: Dataset, transform: Transform = lambda d: d, class_names: tuple[str, ...] = CLASSES):
        self.class_names = class_names
        self.version = "oracle"
        self.calls: list[int] = []
        self._truth = {self._key(read_image(s.image)): s.detections for s in dataset.samples}
        self._transform = transform

    @staticmethod
    def _key(frame: npt.NDArray[np.uint8]) -> str:
        return hashlib.sha256(frame.tobytes()).hexdigest()

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        self.calls.append(len(frames))
        return [self._transform(self._truth[self._key(frame)]) for frame in frames]


def shrink(factor: float) -> Transform:
    """Boxes scaled about their centre: a box inside its ground truth with IoU = factor**2."""
    def apply(dets: Detections) -> Detections:
        centre = (dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2
        half = (dets.xyxy[:, 2:] - dets.xyxy[:, :2]) / 2 * factor
        xyxy = np.concatenate([centre - half, centre + half], axis=1)
        return Detections(xyxy, dets.class_id, dets.score, dets.class_names, dets.image_size)
    return apply


def add_false_alarm(score: float) -> Transform:
    """Every frame also gets a `stain` box of `score` in its top-left corner."""
    def apply(dets: Detections) -> Detections:
        xyxy = np.concatenate([dets.xyxy, [[0, 0, 6, 6]]])
        return Detections(xyxy, [*dets.class_id, 2], [*dets.score, score], dets.class_names, dets.image_size)
    return apply


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return write_frames(tmp_path_factory.mktemp("frames"), defect_frames=8, good_frames=4)


def run(dataset: Dataset, out: Path, transform: Transform = lambda d: d, thresholds: Thresholds = None) -> EvalReport:
    options = EvalOptions(batch_size=3, annotated_frames=2, plots=False)
    return evaluate(OracleDetector(dataset, transform), dataset, out, thresholds, options)


def test_perfect_predictions_score_map_one(dataset: Dataset, tmp_path: Path) -> None:
    report = run(dataset, tmp_path)

    assert report.map == pytest.approx(1.0)
    assert report.map50 == pytest.approx(1.0)
    present = {name for s in dataset.samples for name in s.detections.labels}
    assert {name: ap for name, ap in report.per_class.items() if name in present} == {
        name: pytest.approx(1.0) for name in present}
    gt_counts = [sum(s.detections.labels.count(name) for s in dataset.samples) for name in CLASSES]
    assert report.confusion.diagonal()[:3].tolist() == gt_counts
    assert report.confusion.sum() == sum(gt_counts)  # no misses, no false alarms
    assert report.false_rejects == {"known_good_frames": 4, "count": 0, "rate": 0.0, "frames": []}


def test_detector_is_called_in_batches(dataset: Dataset, tmp_path: Path) -> None:
    detector = OracleDetector(dataset)
    evaluate(detector, dataset, tmp_path, options=EvalOptions(batch_size=5, annotated_frames=0, plots=False))
    assert detector.calls == [5, 5, 2]


def test_loose_boxes_keep_map50_but_lose_strict_iou_thresholds(dataset: Dataset, tmp_path: Path) -> None:
    # IoU 0.62 with every ground-truth box: a hit at COCO IoU .50, .55 and .60, a miss at .65 ... .95
    report = run(dataset, tmp_path, shrink(0.62 ** 0.5))

    assert report.map50 == pytest.approx(1.0)
    assert report.map == pytest.approx(0.3, abs=1e-6)


def test_boxes_below_the_iou_threshold_score_zero(dataset: Dataset, tmp_path: Path) -> None:
    report = run(dataset, tmp_path, shrink(0.45 ** 0.5))

    assert report.map == 0.0
    assert report.map50 == 0.0
    assert report.confusion[:3, 3].sum() == report.counts["gt_boxes"]  # every box missed
    assert report.confusion[3, :3].sum() == report.counts["gt_boxes"]  # every prediction a false alarm


def test_wrong_class_shows_off_diagonal_in_the_confusion_matrix(dataset: Dataset, tmp_path: Path) -> None:
    def hole_becomes_stain(dets: Detections) -> Detections:
        return Detections(dets.xyxy, np.where(dets.class_id == 1, 2, dets.class_id), dets.score,
                          dets.class_names, dets.image_size)

    report = run(dataset, tmp_path, hole_becomes_stain)

    holes = sum(s.detections.labels.count("hole") for s in dataset.samples)
    assert holes > 0
    assert report.confusion[1, 2] == holes
    assert report.confusion[1, 1] == 0
    assert report.per_class["hole"] == 0.0
    assert report.per_class["scratch"] == pytest.approx(1.0)


def test_false_rejects_count_known_good_frames_above_threshold(dataset: Dataset, tmp_path: Path) -> None:
    flagged = run(dataset, tmp_path / "a", add_false_alarm(0.7), thresholds=0.5)
    assert flagged.false_rejects["count"] == 4
    assert flagged.false_rejects["rate"] == 1.0
    assert flagged.false_rejects["frames"] == ["008.png", "009.png", "010.png", "011.png"]

    per_class = run(dataset, tmp_path / "b", add_false_alarm(0.7), thresholds={"stain": 0.8})
    assert per_class.false_rejects["count"] == 0


def test_low_scoring_false_alarms_rank_last_and_keep_ap(dataset: Dataset, tmp_path: Path) -> None:
    # the real scores order the predictions: false alarms below every true hit leave AP@.5 intact
    low = run(dataset, tmp_path / "low", add_false_alarm(0.1))
    def hits_at_08(dets: Detections) -> Detections:
        return Detections(dets.xyxy, dets.class_id, np.full(len(dets), 0.8), dets.class_names, dets.image_size)

    high = run(dataset, tmp_path / "high", lambda d: add_false_alarm(0.95)(hits_at_08(d)))
    stains = sum(s.detections.labels.count("stain") for s in dataset.samples)
    assert stains > 0
    assert low.coco.per_class_ap50["stain"] == pytest.approx(1.0)
    high_ap = high.coco.per_class_ap50["stain"]
    assert high_ap is not None and high_ap < 0.9


def test_report_files_are_written(dataset: Dataset, tmp_path: Path) -> None:
    options = EvalOptions(batch_size=4, annotated_frames=3, plots=True)
    evaluate(OracleDetector(dataset, add_false_alarm(0.9)), dataset, tmp_path, options=options)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"map", "map50", "per_class", "false_rejects", "confusion_matrix", "operating_point"} <= set(metrics)
    assert set(metrics["per_class"]) == set(CLASSES)
    confusion = json.loads((tmp_path / "confusion_matrix.json").read_text())
    assert confusion["labels"] == [*CLASSES, "background"]
    assert np.asarray(confusion["matrix"]).shape == (4, 4)
    assert set(json.loads((tmp_path / "pr_curves.json").read_text())["classes"]) == set(CLASSES)
    for png in ("pr_curves.png", "confusion_matrix.png"):
        assert read_image(tmp_path / png).shape[0] > 100
    annotated = sorted((tmp_path / "annotated").glob("*.png"))
    assert len(annotated) == 3
    assert read_image(annotated[0]).shape == (96, 96, 3)


def scored(score: float) -> Transform:
    """The ground-truth boxes, each with `score`."""
    def apply(dets: Detections) -> Detections:
        return Detections(dets.xyxy, dets.class_id, np.full(len(dets), score), dets.class_names, dets.image_size)
    return apply


def test_the_report_says_how_calibrated_the_scores_are_and_draws_the_reliability_diagram(dataset: Dataset,
                                                                                         tmp_path: Path) -> None:
    options = EvalOptions(batch_size=4, annotated_frames=0, plots=True)
    report = evaluate(OracleDetector(dataset, scored(0.5)), dataset, tmp_path, options=options)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    calibration = metrics["score_calibration"]
    assert calibration["ece"] == pytest.approx(0.5)  # every box is real but says 50 %
    assert calibration["boxes"] == report.counts["detections"] and calibration["binning"] == "10 equal-width score bins"
    present = {name for s in dataset.samples for name in s.detections.labels}
    assert {name for name, ece in calibration["per_class_ece"].items() if ece is not None} == present
    assert metrics["files"]["reliability_png"] == "reliability.png"
    assert read_image(tmp_path / "reliability.png").shape[0] > 100

    right = evaluate(OracleDetector(dataset, add_false_alarm(0.0)), dataset, tmp_path / "right", options=options)
    assert right.reliability()["overall"].ece == pytest.approx(0.0)  # real boxes at 1.0, false alarms at 0.0


def test_annotated_frames_are_the_ones_with_most_errors(dataset: Dataset, tmp_path: Path) -> None:
    def nothing(dets: Detections) -> Detections:
        return Detections.empty(dets.class_names, dets.image_size)

    evaluate(OracleDetector(dataset, nothing), dataset, tmp_path, options=EvalOptions(annotated_frames=3, plots=False))

    # with no predictions a frame's errors are its missed boxes
    boxes = [len(s.detections) for s in dataset.samples]
    worst = sorted(range(len(boxes)), key=lambda i: (-boxes[i], i))[:3]
    assert sorted(p.name for p in (tmp_path / "annotated").glob("*.png")) == sorted(
        f"{i:05d}_{i:03d}.png" for i in worst)


def test_data_set_class_unknown_to_the_model_is_refused(dataset: Dataset, tmp_path: Path) -> None:
    detector = OracleDetector(dataset, class_names=("scratch", "hole"))
    with pytest.raises(EvalError, match=r"class\(es\) \['stain'\] are unknown to the model"):
        evaluate(detector, dataset, tmp_path)


def test_thresholds_for_unknown_classes_are_refused(dataset: Dataset, tmp_path: Path) -> None:
    with pytest.raises(EvalError, match=r"unknown class\(es\) \['crack'\]"):
        run(dataset, tmp_path, thresholds={"crack": 0.3})
    with pytest.raises(EvalError, match=r"\[0, 1\]; got \{'scratch': 1.5"):
        run(dataset, tmp_path, thresholds={"scratch": 1.5})


def test_cli_evaluates_a_tiny_model_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    assert runner.invoke(app, ["data", "synth", "--out", str(data), "--count", "4", "--size", "64"]).exit_code == 0

    result = runner.invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", str(data),
                                 "--out", str(tmp_path / "report"), "--batch", "2", "--annotated", "2",
                                 "--thresholds", "scratch=0.3,hole=0.6", "--device", "cpu"])

    assert result.exit_code == 0, result.output
    assert "mAP" in result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0
    assert metrics["images"] == 4
    assert metrics["thresholds"] == {"scratch": 0.3, "hole": 0.6, "stain": 0.5}
    assert len(list((tmp_path / "report" / "annotated").glob("*.png"))) == 2
    assert (tmp_path / "report" / "pr_curves.png").stat().st_size > 0


def test_cli_publishes_calibrated_scores_unless_told_not_to_and_names_a_corrupt_calibration(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from agent.detector.score_calibration import ClassCalibration, ScoreCalibration

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    calibration = ScoreCalibration({"scratch": ClassCalibration(True, 2.0, 1.0, "Platt scaling on 40 boxes")})
    (model / "calibration.json").write_text(json.dumps(calibration.to_json()))
    runner = CliRunner()
    data = tmp_path / "data"
    assert runner.invoke(app, ["data", "synth", "--out", str(data), "--count", "2", "--size", "64"]).exit_code == 0
    command = ["evaluate", "--model", str(model), "--data", str(data), "--annotated", "0", "--device", "cpu"]

    result = runner.invoke(app, [*command, "--out", str(tmp_path / "calibrated")])
    assert result.exit_code == 0, result.output
    assert f"scores calibrated with {model}/calibration.json" in result.output
    assert "score calibration error (ECE, 10 equal-width score bins" in result.output
    raw = runner.invoke(app, [*command, "--out", str(tmp_path / "raw"), "--raw-scores"])
    assert raw.exit_code == 0 and "scores calibrated" not in raw.output

    (model / "calibration.json").write_text("{broken")
    broken = runner.invoke(app, [*command, "--out", str(tmp_path / "broken")])
    assert broken.exit_code == 2 and f"{model}/calibration.json is not JSON" in broken.output


def test_cli_rejects_a_malformed_threshold(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path),
                                      "--out", str(tmp_path / "r"), "--thresholds", "hole=high"])
    assert result.exit_code == 2
    assert "'high' is not a number" in result.output
