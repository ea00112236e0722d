"""The camera geometry file: written and read back, refused naming the file and field, chosen per camera."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from agent.geometry import CameraGeometries, GeometryError, geometry_path, read_geometry, write_geometry
from tests.fixtures.geometry import flat_geometry


@dataclass
class Camera:
    name: str
    geometry: Path | None = None


def test_to_mm_scales_and_turns_pixels_onto_the_belt() -> None:
    mapped = flat_geometry(0.5, rotation_deg=90.0).to_mm([[0, 0], [10, 0], [0, 4]])
    assert np.allclose(mapped, [[0, 0], [0, 5], [-2, 0]])
    assert flat_geometry().to_mm(np.zeros((0, 2))).shape == (0, 2)


def test_a_written_file_reads_back_equal_and_names_its_schema(tmp_path: Path) -> None:
    path = write_geometry(tmp_path / "geometry" / "cam0.json", flat_geometry())
    assert json.loads(path.read_text())["schema"] == "edge-inspect.camera-geometry/1"
    assert read_geometry(path) == flat_geometry()


@pytest.mark.parametrize(("change", "named"), [
    ({"schema": "edge-inspect.camera-geometry/9"}, "schema"),
    ({"image_size": [0, 480]}, "image_size"),
    ({"camera_matrix": [[1, 0, 0], [0, -1, 0], [0, 0, 1]]}, "camera_matrix"),
    ({"dist_coeffs": [0.1, 0.2, 0.3]}, "dist_coeffs: has 3 coefficients"),
    ({"belt": {**flat_geometry().belt.model_dump(), "homography": [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}},
     "belt.homography"),
    ({"belt": {**flat_geometry().belt.model_dump(), "homography": [[1, 0, 0], [0, 1, 0], [0, 0.01, -0.5]]}},
     "belt.homography does not map the whole image onto the belt plane (its horizon crosses the image)"),
    ({"reprojection_error_px": float("nan")}, "reprojection_error_px"),
    ({"extra": 1}, "extra"),
])
def test_a_broken_file_is_refused_naming_the_file_and_the_field(tmp_path: Path, change, named) -> None:
    path = tmp_path / "cam0.json"
    path.write_text(json.dumps({**flat_geometry().to_json(), **change}))
    with pytest.raises(GeometryError) as refused:
        read_geometry(path)
    assert str(path) in str(refused.value) and named in str(refused.value)


def test_missing_and_non_json_files_are_refused_naming_them(tmp_path: Path) -> None:
    with pytest.raises(GeometryError, match="nowhere.json is missing"):
        read_geometry(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GeometryError, match="bad.json is not valid JSON"):
        read_geometry(tmp_path / "bad.json")


def test_the_default_path_is_in_the_state_dir_unless_the_config_names_one(tmp_path: Path) -> None:
    assert geometry_path(Camera("cam0"), tmp_path) == tmp_path / "geometry" / "cam0.json"
    assert geometry_path(Camera("cam0", tmp_path / "g.json"), tmp_path / "state") == tmp_path / "g.json"


def test_a_frame_of_another_size_gets_no_geometry_warned_once() -> None:
    geometries = CameraGeometries({"cam0": flat_geometry(image_size=(160, 120))})
    assert geometries.for_frame("cam0", (160, 120)) is not None
    assert geometries.for_frame("cam1", (160, 120)) is None
    with capture_logs() as logs:
        assert geometries.for_frame("cam0", (320, 240)) is None
        assert geometries.for_frame("cam0", (320, 240)) is None
    assert [e["event"] for e in logs] == ["frame size differs from the camera's calibration: no sizes in mm for "
                                          "this camera"]


def test_load_skips_missing_files_and_a_broken_file_keeps_the_previous_geometry(tmp_path: Path) -> None:
    write_geometry(tmp_path / "geometry" / "cam0.json", flat_geometry(0.1))
    cameras = [Camera("cam0"), Camera("cam1"), Camera("cam2", tmp_path / "named.json")]
    with capture_logs() as logs:
        first = CameraGeometries.load(cameras, tmp_path)
    assert list(first.by_camera) == ["cam0"]
    assert [e["camera"] for e in logs if e["log_level"] == "warning"] == ["cam2"]  # named in the config, missing
    (tmp_path / "geometry" / "cam0.json").write_text("{}")
    with capture_logs() as logs:
        again = CameraGeometries.load(cameras, tmp_path, previous=first)
    assert again.by_camera["cam0"] == flat_geometry(0.1)
    refused = [e for e in logs if e["log_level"] == "error"]
    assert refused[0]["camera"] == "cam0" and refused[0]["kept_previous"] is True
    assert CameraGeometries.load(cameras, tmp_path).by_camera == {}  # at start there is nothing to keep
