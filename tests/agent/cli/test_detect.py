"""`edge-inspect detect`: one JSON line per image, annotated frames on request, unreadable files reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from agent.cli import app
from agent.cli.detect import score_calibration_of


def write_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        path = folder / f"frame{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_detect_prints_one_json_line_per_image_and_writes_annotated_frames(tiny_model_dir: Path,
                                                                           tmp_path: Path) -> None:
    images = write_images(tmp_path, 3)
    result = CliRunner().invoke(app, ["detect", "--model", str(tiny_model_dir), *map(str, images),
                                      "--annotate", str(tmp_path / "annotated")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["image"] for line in lines] == [str(p) for p in images]
    for line in lines:
        assert set(line) == {"image", "defects", "latency_ms"}
        for defect in line["defects"]:
            assert {"label", "score", "box"} <= set(defect) and 0 <= defect["score"] <= 1
    annotated = sorted(p.name for p in (tmp_path / "annotated").iterdir())
    assert annotated == ["frame0.png", "frame1.png", "frame2.png"]
    first = cv2.imread(str(tmp_path / "annotated" / "frame0.png"))
    assert first is not None and first.shape == (120, 160, 3)


def test_an_unreadable_image_is_reported_by_name_and_the_others_still_run(tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    (good,) = write_images(tmp_path, 1)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    result = CliRunner().invoke(app, ["detect", "--model", str(tiny_model_dir), str(bad), str(good)])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["image"] == str(bad) and "not a decodable image" in lines[0]["error"]
    assert lines[1]["image"] == str(good) and "defects" in lines[1]


def test_a_missing_model_directory_exits_2_with_the_path(tmp_path: Path) -> None:
    (good,) = write_images(tmp_path, 1)
    result = CliRunner().invoke(app, ["detect", "--model", str(tmp_path / "no-model"), str(good)])
    assert result.exit_code == 2
    assert str(tmp_path / "no-model") in result.output


def test_detect_prints_the_calibrated_scores_the_daemon_publishes(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    names = (model / "classes.txt").read_text().split()
    calibration = {"format": "edge-inspect.score-calibration/1", "method": "platt",
                   "classes": {n: {"fitted": True, "slope": 1.0, "offset": 0.0} for n in names}}
    (model / "calibration.json").write_text(json.dumps(calibration))
    assert score_calibration_of(str(model), None).of(names[0]).fitted
    assert score_calibration_of(str(tiny_model_dir), None).is_identity  # no file: raw scores
    (model / "calibration.json").write_text("{half")
    (good,) = write_images(tmp_path, 1)
    result = CliRunner().invoke(app, ["detect", "--model", str(model), str(good)])
    assert result.exit_code == 2 and "calibration.json is not JSON" in result.output
    raw = CliRunner().invoke(app, ["detect", "--model", str(model), "--raw-scores", str(good)])
    assert raw.exit_code == 0, raw.output


def test_region_tasks_print_their_regions_and_draw_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    images = write_images(tmp_path, 2)
    for task in (["--task", "dense-region-caption"], ["--task", "phrase-grounding", "--phrase", "oil spot"]):
        result = CliRunner().invoke(app, ["detect", "--model", str(tiny_model_dir), *map(str, images), *task,
                                          "--max-new-tokens", "24", "--annotate", str(tmp_path / task[1])])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert [line["image"] for line in lines] == [str(p) for p in images]
        for line in lines:
            assert line["task"] == task[1] and "defects" not in line
            assert line.get("phrase") == (task[3] if len(task) > 2 else None)
            for region in line["regions"]:
                x1, y1, x2, y2 = region["box"]
                assert 0 <= x1 <= x2 <= 160 and 0 <= y1 <= y2 <= 120 and 0 <= region["score"] <= 1
                assert region["label"] == task[3] if len(task) > 2 else region["label"]
        assert sorted(p.name for p in (tmp_path / task[1]).iterdir()) == ["frame0.png", "frame1.png"]


def test_a_bad_task_or_phrase_exits_2_naming_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    (image,) = write_images(tmp_path, 1)
    for args, message in [(["--task", "segment"], "unknown task 'segment'"),
                          (["--task", "phrase-grounding"], "needs a phrase"),
                          (["--phrase", "hole"], "task 'od' takes no phrase")]:
        result = CliRunner().invoke(app, ["detect", "--model", str(tiny_model_dir), str(image), *args])
        assert result.exit_code == 2 and message in result.output, result.output
