"""`edge-inspect calibrate camera`: progress per image, the geometry written where the daemon reads it, exit 1 with
the images named when they cannot calibrate, exit 2 for bad options."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from agent.cli import app
from agent.geometry import BoardSpec, read_geometry
from calibration.camera import make_board
from tests.calibration.charuco_scene import FOCAL

runner = CliRunner()
BOARD = ["--squares", "10x7", "--square-mm", "8", "--marker-mm", "6", "--dictionary", "DICT_5X5_100"]


def flat(text: str) -> str:
    """Output without rich's panel borders and line wrapping, to search for a whole message."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())


def write_config(tmp: Path, cameras: list[dict]) -> Path:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp / "state"), "model": {"path": str(tmp)},
                                    "cameras": cameras}))
    return path


def test_writes_the_cameras_geometry_into_the_state_dir_with_progress(charuco_images, tmp_path: Path) -> None:
    views, belt = charuco_images
    config = write_config(tmp_path, [{"name": "line-cam"}])
    result = runner.invoke(app, ["calibrate", "camera", str(views[0].parent), "--belt", str(belt), *BOARD,
                                 "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("[1/6] view00.png: 5") and "corners" in lines[1]
    assert any(line.startswith("belt [1/1] belt00.png: 5") for line in lines)
    assert any(line.startswith("reprojection error 0.") and "over 6 views" in line for line in lines)
    written = tmp_path / "state" / "geometry" / "line-cam.json"
    assert lines[-1].startswith(f"written: {written}")
    geometry = read_geometry(written)
    assert geometry.camera == "line-cam" and geometry.camera_matrix[0][0] == pytest.approx(FOCAL, rel=0.01)
    assert json.loads(written.read_text())["board"]["squares_x"] == 10


def test_the_configs_geometry_path_or_out_says_where_it_goes(charuco_images, tmp_path: Path) -> None:
    views, belt = charuco_images
    named = tmp_path / "cameras" / "b.json"
    config = write_config(tmp_path, [{"name": "a"}, {"name": "b", "geometry": str(named)}])
    args = ["calibrate", "camera", *map(str, views), "--belt", str(belt), *BOARD, "--config", str(config)]
    ambiguous = runner.invoke(app, args)
    assert ambiguous.exit_code == 2
    assert "the config has cameras ['a', 'b']: name one with --camera" in flat(ambiguous.output)
    assert runner.invoke(app, [*args, "--camera", "b"]).exit_code == 0 and read_geometry(named).camera == "b"
    unknown = runner.invoke(app, [*args, "--camera", "c"])
    assert unknown.exit_code == 2 and "no camera 'c' in" in flat(unknown.output)
    out = tmp_path / "out.json"
    assert runner.invoke(app, [*args[:-2], "--out", str(out)]).exit_code == 0 and out.is_file()
    blocked = runner.invoke(app, [*args[:-2], "--out", str(out / "g.json")])  # a file where its folder would go
    assert blocked.exit_code == 1 and f"error: cannot write {out / 'g.json'}" in blocked.stderr


def test_images_without_enough_corners_exit_1_naming_each_image(charuco_images, tmp_path: Path) -> None:
    views, belt = charuco_images
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((480, 640), 128, np.uint8))
    result = runner.invoke(app, ["calibrate", "camera", str(views[0]), str(grey), "--belt", str(belt), *BOARD,
                                 "--out", str(tmp_path / "g.json")])
    assert result.exit_code == 1
    assert "only 1 of 2 calibration images show at least 8 ChArUco corners; 6 are needed" in result.stderr
    assert "  grey.png: 0 corners" in result.stderr and "  view00.png: 5" in result.stderr
    assert not (tmp_path / "g.json").exists()


@pytest.mark.parametrize(("options", "message"), [
    (["--squares", "10by7", "--square-mm", "8", "--marker-mm", "6"], "'10by7' is not COLUMNSxROWS"),
    (["--squares", "10x7", "--square-mm", "8", "--marker-mm", "9"], "marker_mm 9.0 must be smaller than square_mm"),
    (["--squares", "1x7", "--square-mm", "8", "--marker-mm", "6"], "squares_x"),
    (BOARD, "give --config"),
])
def test_bad_options_exit_2_naming_the_value(tmp_path: Path, options: list[str], message: str) -> None:
    result = runner.invoke(app, ["calibrate", "camera", str(tmp_path), "--belt", str(tmp_path), *options])
    assert result.exit_code == 2
    assert message in flat(result.output)


def test_board_writes_a_printable_board_with_its_dpi_that_the_detector_reads_whole(tmp_path: Path) -> None:
    out = tmp_path / "print" / "board.png"
    result = runner.invoke(app, ["calibrate", "board", "--out", str(out), "--squares", "6x4", "--square-mm", "20",
                                 "--marker-mm", "15", "--dpi", "200"])
    assert result.exit_code == 0, result.output
    assert "--squares 6x4 --square-mm 20 --marker-mm 15 --dictionary DICT_5X5_100" in result.stdout
    with Image.open(out) as printed:
        assert printed.info["dpi"] == pytest.approx((200, 200), abs=0.01)
        pixels = np.asarray(printed.convert("L"))
    spec = BoardSpec(squares_x=6, squares_y=4, square_mm=20, marker_mm=15, dictionary="DICT_5X5_100")
    corners, ids, _, _ = cv2.aruco.CharucoDetector(make_board(spec)).detectBoard(pixels)
    assert len(ids) == 15  # (6 - 1) x (4 - 1): every inner corner
    first_row = corners.reshape(-1, 2)[np.argsort(ids.reshape(-1))][:5]  # ids 0..4, left to right
    square_px = np.diff(first_row[:, 0]).mean()
    assert square_px == pytest.approx(20 / 25.4 * 200, rel=0.01)  # 20 mm at 200 dpi
