"""Camera geometry: how one camera's pixels map to millimetres on the belt plane.

`edge-inspect calibrate camera` (calibration/cli/camera.py) writes a geometry file per camera; the daemon reads it
here, so the format and the pixel -> mm mapping live in agent (which never imports calibration). A geometry holds the
camera's intrinsics (camera matrix and distortion, fitted on ChArUco board views) and a homography from undistorted
pixels to mm on the plane of a board that lay on the belt. `CameraGeometry.to_mm` maps frame pixels: undistort with
the intrinsics, then the homography.

File (JSON, `edge-inspect.camera-geometry/1`): `camera`, `created_at`, `image_size` [w, h], `board` (the ChArUco
board it was calibrated with), `camera_matrix` (3 x 3), `dist_coeffs`, `reprojection_error_px`, `views` (the images
used and their corner counts) and `belt` (image, corners, `homography` 3 x 3, `fit_error_mm`, `mm_per_px`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.config import Settings
from agent.config.errors import format_validation_errors
from agent.statedir import StateDir
from agent.store.files import StoreError, read_json, write_json_atomic

log = structlog.get_logger("agent.geometry")

GEOMETRY_SCHEMA: Final = "edge-inspect.camera-geometry/1"
DISTORTION_LENGTHS = (4, 5, 8, 12, 14)  # the coefficient counts OpenCV's distortion models have
# undistorting a point is iterative; OpenCV's default (5 iterations) leaves ~0.1 px at strongly distorted corners
UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-6)


class GeometryError(ValueError):
    """A geometry file that is missing, unreadable or does not describe a camera (names the file and the field)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BoardSpec(_Record):
    """A ChArUco board as printed: squares across and down, their side and the markers' side in mm, the dictionary."""

    squares_x: int = Field(ge=2, le=100, description="squares across (columns)")
    squares_y: int = Field(ge=2, le=100, description="squares down (rows)")
    square_mm: float = Field(gt=0, description="side of one chessboard square, in mm, as measured on the print")
    marker_mm: float = Field(gt=0, description="side of one ArUco marker, in mm")
    dictionary: str = Field(pattern=r"^DICT_[A-Z0-9_]+$", description="OpenCV ArUco dictionary, e.g. DICT_5X5_100")
    legacy_pattern: bool = Field(default=False, description="a board made before OpenCV 4.6 (other corner layout)")

    @model_validator(mode="after")
    def _marker_inside_square(self) -> BoardSpec:
        if self.marker_mm >= self.square_mm:
            raise ValueError(f"marker_mm {self.marker_mm} must be smaller than square_mm {self.square_mm}")
        return self


class ViewRecord(_Record):
    image: str
    corners: int = Field(ge=0)


class BeltRecord(_Record):
    image: str
    corners: int = Field(ge=4)
    homography: list[list[float]] = Field(description="undistorted pixels -> mm on the belt plane (3 x 3)")
    fit_error_mm: float = Field(ge=0, description="RMS distance between the board's corners and their mapped pixels")
    mm_per_px: float = Field(gt=0, description="scale at the image centre, for a quick plausibility check")

    @field_validator("homography")
    @classmethod
    def _invertible(cls, matrix: list[list[float]]) -> list[list[float]]:
        if np.asarray(matrix).shape != (3, 3) or abs(np.linalg.det(np.asarray(matrix))) < 1e-12:
            raise ValueError("must be an invertible 3 x 3 matrix")
        return matrix


class CameraGeometry(_Record):
    """One camera's geometry file; `to_mm` maps pixels of frames of `image_size` onto the belt plane."""

    schema_: Literal["edge-inspect.camera-geometry/1"] = Field(alias="schema")
    camera: str | None = Field(description="the camera it was made for (informative)")
    created_at: str
    image_size: tuple[int, int] = Field(description="width, height of the calibration images and of the frames")
    board: BoardSpec
    camera_matrix: list[list[float]]
    dist_coeffs: list[float]
    reprojection_error_px: float = Field(ge=0, description="RMS reprojection error of the intrinsics fit")
    views: list[ViewRecord]
    belt: BeltRecord

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, size: tuple[int, int]) -> tuple[int, int]:
        if min(size) < 1:
            raise ValueError(f"width and height must be positive, got {list(size)}")
        return size

    @field_validator("camera_matrix")
    @classmethod
    def _pinhole(cls, matrix: list[list[float]]) -> list[list[float]]:
        k = np.asarray(matrix)
        if k.shape != (3, 3) or k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0, 0, 1]):
            raise ValueError("must be a 3 x 3 camera matrix with positive focal lengths and last row 0 0 1")
        return matrix

    @field_validator("dist_coeffs")
    @classmethod
    def _distortion_model(cls, coeffs: list[float]) -> list[float]:
        if len(coeffs) not in DISTORTION_LENGTHS:
            raise ValueError(f"has {len(coeffs)} coefficients; OpenCV's models have {list(DISTORTION_LENGTHS)}")
        return coeffs

    @model_validator(mode="after")
    def _belt_fills_the_image(self) -> CameraGeometry:
        """Every pixel must land on the belt plane at a finite place: a homography whose horizon crosses the image
        would give some boxes infinite or mirrored sizes."""
        w, h = self.image_size
        border = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
        steps = np.linspace(0.0, 1.0, 16, endpoint=False)[None, :, None]
        edges = (border[:, None, :] + steps * (np.roll(border, -1, axis=0) - border)[:, None, :]).reshape(-1, 2)
        k, dist, homography = self._arrays()
        undistorted = undistort_points(edges, k, dist)
        depth = np.column_stack([undistorted, np.ones(len(undistorted))]) @ homography[2]
        if not (np.isfinite(depth).all() and (np.all(depth > 0) or np.all(depth < 0))):
            raise ValueError("belt.homography does not map the whole image onto the belt plane (its horizon crosses "
                             "the image): recalibrate with the board flat on the belt")
        return self

    def _arrays(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Camera matrix, distortion and homography as arrays (a few small conversions: not worth a cache, which
        would also take part in the model's equality)."""
        return (np.asarray(self.camera_matrix, dtype=np.float64), np.asarray(self.dist_coeffs, dtype=np.float64),
                np.asarray(self.belt.homography, dtype=np.float64))

    def to_mm(self, points_px: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """N x 2 pixels of a frame -> N x 2 mm on the belt plane (the board's axes; origin at its first corner)."""
        k, dist, homography = self._arrays()
        return apply_homography(homography, undistort_points(points_px, k, dist))

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


def undistort_points(points_px: npt.ArrayLike, camera_matrix: npt.ArrayLike, dist_coeffs: npt.ArrayLike
                     ) -> npt.NDArray[np.float64]:
    """N x 2 pixels -> where an ideal pinhole camera with the same camera matrix would see them."""
    points = np.asarray(points_px, dtype=np.float64).reshape(-1, 1, 2)
    if len(points) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    k, dist = np.asarray(camera_matrix, dtype=np.float64), np.asarray(dist_coeffs, dtype=np.float64)
    undistorted = cv2.undistortImagePoints(points, k, dist, None, UNDISTORT_CRITERIA)
    return np.asarray(undistorted, dtype=np.float64).reshape(-1, 2)


def apply_homography(homography: npt.ArrayLike, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """N x 2 points through a 3 x 3 homography."""
    flat = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
    if len(flat) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    mapped = cv2.perspectiveTransform(flat, np.asarray(homography, dtype=np.float64))
    return np.asarray(mapped, dtype=np.float64).reshape(-1, 2)


def read_geometry(path: Path) -> CameraGeometry:
    """The geometry file at `path`; `GeometryError` naming the file and each bad field otherwise."""
    try:
        data = read_json(path)
    except StoreError as exc:
        raise GeometryError(f"camera geometry {exc}") from None
    except OSError as exc:  # unreadable (permissions, a folder): the same refusal, naming the file
        raise GeometryError(f"camera geometry {path} cannot be read: {exc}") from None
    try:
        return CameraGeometry.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(format_validation_errors(exc))
        raise GeometryError(f"camera geometry {path} is not an {GEOMETRY_SCHEMA} file: {problems}") from None


def write_geometry(path: Path, geometry: CameraGeometry) -> Path:
    """Write atomically (a reader never sees half a file), creating the folder; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, geometry.to_json())
    return path


class CameraEntry(Protocol):
    """What a `cameras` entry says about geometry (agent/config/sections.py:CameraConfig)."""

    name: str
    geometry: Path | None


def geometry_path(camera: CameraEntry, state_dir: Path) -> Path:
    """Where a camera's geometry lives: the config's `geometry`, else `{state_dir}/geometry/{camera}.json`."""
    return camera.geometry if camera.geometry is not None else StateDir(state_dir).geometry(camera.name)


class CameraGeometries:
    """Each camera's geometry, as the daemon measures with it. A frame whose size is not the calibrated one gets no
    geometry (its boxes no sizes), warned once per camera: mm from another resolution would be silently wrong."""

    def __init__(self, by_camera: dict[str, CameraGeometry]) -> None:
        self.by_camera = dict(by_camera)
        self._warned: set[str] = set()

    def for_frame(self, camera: str, image_size: tuple[int, int]) -> CameraGeometry | None:
        geometry = self.by_camera.get(camera)
        if geometry is None or tuple(geometry.image_size) == tuple(image_size):
            return geometry
        if camera not in self._warned:
            self._warned.add(camera)
            log.warning("frame size differs from the camera's calibration: no sizes in mm for this camera",
                        camera=camera, frame_size=list(image_size), calibrated_size=list(geometry.image_size))
        return None

    @classmethod
    def load(cls, cameras: Sequence[CameraEntry], state_dir: Path,
             previous: CameraGeometries | None = None) -> CameraGeometries:
        """Read every camera's file. A missing one means no sizes for that camera; a broken one is logged and, on a
        reload, the camera keeps the geometry it had (a bad file never takes working sizes away silently)."""
        loaded: dict[str, CameraGeometry] = {}
        for camera in cameras:
            path = geometry_path(camera, state_dir)
            if not path.exists():
                if camera.geometry is not None:
                    log.warning("camera geometry file missing: no sizes in mm", camera=camera.name, path=str(path))
                continue
            try:
                loaded[camera.name] = read_geometry(path)
            except GeometryError as exc:
                kept = previous.by_camera.get(camera.name) if previous is not None else None
                log.error("camera geometry refused", camera=camera.name, error=str(exc), kept_previous=kept is not None)
                if kept is not None:
                    loaded[camera.name] = kept
        return cls(loaded)


def geometries_from_settings(settings: Settings, previous: CameraGeometries | None = None) -> CameraGeometries:
    """The daemon's geometries (at start and on every reload); warns when size rules cannot apply for a camera."""
    geometries = CameraGeometries.load(settings.cameras, settings.state_dir, previous)
    unmeasured = [camera.name for camera in settings.cameras if camera.name not in geometries.by_camera]
    if settings.model.size_rules and unmeasured:
        log.warning("model.size_rules cannot apply without a camera geometry: these cameras judge by score alone",
                    cameras=unmeasured, rules=sorted(settings.model.size_rules))
    return geometries
