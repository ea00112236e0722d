"""Camera calibration from ChArUco images of a known camera: the focal length comes back, lengths and areas on the
belt measure within 1 %, and every bad set (too few corners, mixed sizes, wrong board) is refused naming the images."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.geometry import BoardSpec, CameraGeometry, read_geometry, write_geometry
from agent.measure import densify, polygon_size
from calibration.camera import CalibrationError, CalibrationOptions, calibrate_camera, make_board
from tests.calibration.charuco_scene import FOCAL, SIZE, SPEC, belt_pixels


@pytest.fixture(scope="module")
def geometry(charuco_images: tuple[list[Path], Path]) -> CameraGeometry:
    views, belt = charuco_images
    return calibrate_camera([views[0].parent], belt, SPEC, CalibrationOptions(), camera="cam0")


def blank(folder: Path, name: str, size: tuple[int, int] = SIZE) -> Path:
    """A grey image: no board in it."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / name), np.full((size[1], size[0]), 128, np.uint8))
    return folder / name


def test_calibration_recovers_the_focal_length_from_six_views(geometry: CameraGeometry) -> None:
    k = np.asarray(geometry.camera_matrix)
    assert k[0, 0] == pytest.approx(FOCAL, rel=0.01) and k[1, 1] == pytest.approx(FOCAL, rel=0.01)
    assert geometry.reprojection_error_px < 0.5
    assert geometry.image_size == SIZE and geometry.camera == "cam0" and geometry.board == SPEC
    assert [v.image for v in geometry.views] == [f"view{i:02d}.png" for i in range(6)]
    assert all(v.corners >= 50 for v in geometry.views)  # 54 inner corners on a 10 x 7 board


def test_a_known_length_on_the_belt_measures_within_one_percent(geometry: CameraGeometry) -> None:
    ends = np.array([[-20.0, -15.0], [75.0, 55.0]])  # 118 mm, beyond the board, into the distorted image corners
    measured = geometry.to_mm(belt_pixels(ends))
    assert np.linalg.norm(measured[1] - measured[0]) == pytest.approx(np.linalg.norm(ends[1] - ends[0]), rel=0.01)
    assert geometry.belt.fit_error_mm < 0.05 and geometry.belt.corners >= 50


def test_a_square_outline_on_the_belt_has_its_sides_and_area_within_one_percent(geometry: CameraGeometry) -> None:
    square_mm = np.array([[10.0, 10.0], [30.0, 10.0], [30.0, 30.0], [10.0, 30.0]])  # 20 x 20 mm
    outline_px = belt_pixels(densify(square_mm, 16))  # as a mask's outline: the lens bends its edges
    size = polygon_size(geometry, outline_px)
    assert size.length_mm == pytest.approx(20.0, rel=0.01) and size.width_mm == pytest.approx(20.0, rel=0.01)
    assert size.area_mm2 == pytest.approx(400.0, rel=0.01)


def test_the_geometry_file_round_trips(geometry: CameraGeometry, tmp_path: Path) -> None:
    path = write_geometry(tmp_path / "deep" / "cam0.json", geometry)
    again = read_geometry(path)
    assert again == geometry
    points = belt_pixels(np.array([[0.0, 0.0], [40.0, 20.0]]))
    assert np.allclose(again.to_mm(points), geometry.to_mm(points))


def test_too_few_corners_names_every_image_with_its_count(charuco_images, tmp_path: Path) -> None:
    views, belt = charuco_images
    empty = [blank(tmp_path, f"empty{i}.png") for i in range(3)]
    with pytest.raises(CalibrationError) as refused:
        calibrate_camera([*views[:3], *empty], belt, SPEC, CalibrationOptions(min_images=4))
    message = str(refused.value)
    assert "only 3 of 6 calibration images show at least 8 ChArUco corners; 4 are needed" in message
    assert all(re.search(rf"  {v.name}: 5\d corners", message) for v in views[:3])
    assert all(f"  {p.name}: 0 corners" in message for p in empty)


def test_a_belt_image_without_the_board_is_refused(charuco_images, tmp_path: Path) -> None:
    views, _belt = charuco_images
    with pytest.raises(CalibrationError, match=r"the belt image grey\.png shows 0 ChArUco corners; 8 are needed"):
        calibrate_camera(views, blank(tmp_path, "grey.png"), SPEC, CalibrationOptions())


def test_mixed_image_sizes_are_refused_naming_each_size(charuco_images, tmp_path: Path) -> None:
    views, belt = charuco_images
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(views[0])), (320, 240)))
    with pytest.raises(CalibrationError) as refused:
        calibrate_camera([*views, small], belt, SPEC, CalibrationOptions())
    message = str(refused.value)
    assert "the images differ in size" in message
    assert "640x480: view00.png" in message and "320x240: small.png" in message


@pytest.mark.parametrize(("wrong", "hint"), [
    ({"dictionary": "DICT_4X4_50"}, "view00.png shows 35 markers of DICT_5X5_* but 0 of DICT_4X4_50: give the "
                                    "board's dictionary with --dictionary"),
    ({"squares_x": 7, "squares_y": 5}, "marker ids up to 34 were seen, but a 7x5 board has ids 0..16"),
    ({"squares_x": 12, "squares_y": 9}, "show DICT_5X5_100 markers but no ChArUco corners: --squares 12x9"),
])
def test_wrong_board_parameters_find_no_corners_and_say_which_option(charuco_images, wrong, hint) -> None:
    views, belt = charuco_images
    spec = SPEC.model_copy(update=wrong)
    with pytest.raises(CalibrationError, match=re.escape(hint)):
        calibrate_camera(views[:2], belt, spec, CalibrationOptions(min_images=2))


def test_a_board_larger_than_its_dictionary_and_unknown_dictionaries_are_refused() -> None:
    too_big = BoardSpec(squares_x=20, squares_y=20, square_mm=5, marker_mm=4, dictionary="DICT_5X5_100")
    with pytest.raises(CalibrationError, match="needs 200 markers but DICT_5X5_100 has 100"):
        make_board(too_big)
    with pytest.raises(CalibrationError, match=r"unknown ArUco dictionary 'DICT_9X9_1'.*DICT_5X5_100"):
        make_board(SPEC.model_copy(update={"dictionary": "DICT_9X9_1"}))


def test_missing_and_undecodable_images_are_named(charuco_images, tmp_path: Path) -> None:
    views, belt = charuco_images
    with pytest.raises(CalibrationError, match="nowhere.png: no such file or folder"):
        calibrate_camera([tmp_path / "nowhere.png"], belt, SPEC, CalibrationOptions())
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(CalibrationError, match="broken.png: not a decodable image"):
        calibrate_camera([*views, broken], belt, SPEC, CalibrationOptions())
    (tmp_path / "none").mkdir()
    with pytest.raises(CalibrationError, match="none: no images"):
        calibrate_camera([tmp_path / "none"], belt, SPEC, CalibrationOptions())
