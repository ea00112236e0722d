"""A camera's geometry from ChArUco board images (behind `edge-inspect calibrate camera`).

Two fits: the intrinsics (camera matrix and lens distortion) from several views of the board, then the belt plane, a
homography from undistorted pixels to mm, from one image of the board lying flat on the belt. OpenCV's class-based
ArUco API, the same on 4.x and 5.x (tested with 4.10, 4.14 and 5.1): `CharucoDetector.detectBoard` finds the corners,
`board.matchImagePoints` pairs them with the board's points in mm, `cv2.calibrateCamera` fits
(`cv2.aruco.calibrateCameraCharuco` is gone in 5).
The result is an `agent.geometry.CameraGeometry`, the file the daemon reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from agent.config import format_validation_errors
from agent.geometry import (
    GEOMETRY_SCHEMA,
    BeltRecord,
    BoardSpec,
    CameraGeometry,
    ViewRecord,
    apply_homography,
    undistort_points,
)
from agent.imageio import ImageReadError, read_image
from agent.store.files import utc_now
from calibration.camera_checks import CalibrationError, View, board_hint, corner_problems, same_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
Progress = Callable[[str], None]
PROBE_SIDE = 1280  # the dictionary probe looks at a copy of one image at most this large (a few seconds at worst)
PROBED_DICTIONARIES = ("DICT_4X4_1000", "DICT_5X5_1000", "DICT_6X6_1000", "DICT_7X7_1000", "DICT_ARUCO_ORIGINAL",
                       "DICT_APRILTAG_16H5", "DICT_APRILTAG_25H9", "DICT_APRILTAG_36H10", "DICT_APRILTAG_36H11",
                       "DICT_ARUCO_MIP_36H12")
__all__ = ["CalibrationError", "CalibrationOptions", "board_image", "calibrate_camera", "make_board"]


@dataclass(frozen=True)
class CalibrationOptions:
    min_corners: int = 8  # a view with fewer ChArUco corners is not used
    min_images: int = 6  # fewer usable views than this: no calibration
    fit_k3: bool = False  # the third radial coefficient only helps wide-angle lenses; elsewhere it overfits


def aruco_dictionary(name: str) -> Any:
    """OpenCV's predefined dictionary called `name` (DICT_5X5_100, ...); an unknown name lists the known ones."""
    known = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_") and n.upper() == n)
    if name not in known:
        raise CalibrationError(f"unknown ArUco dictionary {name!r}; OpenCV has {', '.join(known)}")
    return cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))


def make_board(spec: BoardSpec) -> Any:
    """The OpenCV board for `spec`; refuses a board that needs more markers than its dictionary has."""
    dictionary = aruco_dictionary(spec.dictionary)
    needed, available = spec.squares_x * spec.squares_y // 2, len(dictionary.bytesList)
    if needed > available:
        raise CalibrationError(f"a {spec.squares_x}x{spec.squares_y} board needs {needed} markers but "
                               f"{spec.dictionary} has {available}: check --squares and --dictionary")
    board = cv2.aruco.CharucoBoard((spec.squares_x, spec.squares_y), spec.square_mm, spec.marker_mm, dictionary)
    board.setLegacyPattern(spec.legacy_pattern)
    return board


def board_image(spec: BoardSpec, dpi: int) -> npt.NDArray[np.uint8]:
    """The board to print, with a white margin of one square, at `dpi` dots per inch (print it at 100 %)."""
    px_per_mm = dpi / 25.4
    margin = round(spec.square_mm * px_per_mm)
    size = (round(spec.squares_x * spec.square_mm * px_per_mm), round(spec.squares_y * spec.square_mm * px_per_mm))
    image = make_board(spec).generateImage(size, marginSize=0, borderBits=1)
    return np.asarray(cv2.copyMakeBorder(image, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255),
                      dtype=np.uint8)


def markers_by_dictionary(path: Path, given: str) -> dict[str, int]:
    """ArUco markers found in one image with the given dictionary and with the largest of each family (a family's
    smaller dictionaries are its first markers), to tell a technician which dictionary the printed board has."""
    gray = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2GRAY)
    scale = min(1.0, PROBE_SIDE / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    counts = {}
    for name in dict.fromkeys((given, *PROBED_DICTIONARIES)):
        if hasattr(cv2.aruco, name):
            _, ids, _ = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))
                                                ).detectMarkers(small)
            counts[name] = 0 if ids is None else len(ids)
    return counts


def image_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders as their images (sorted); a missing path or an empty folder is an error."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CalibrationError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CalibrationError(f"{path}: no such file or folder")
    return files


def detect_view(detector: Any, board: Any, path: Path) -> View:
    """The board's corners in one image, paired with their points on the board (mm)."""
    try:
        gray = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2GRAY)
    except ImageReadError as exc:
        raise CalibrationError(str(exc)) from None
    corners, ids, _, marker_ids = detector.detectBoard(gray)
    size = (int(gray.shape[1]), int(gray.shape[0]))
    markers = np.asarray(marker_ids if marker_ids is not None else [], dtype=np.int64).reshape(-1)
    top_marker = int(markers.max()) if len(markers) else -1
    if ids is None or len(ids) == 0:
        return View(path.name, size, 0, len(markers), top_marker)
    collinear = bool(board.checkCharucoCornersCollinear(ids))
    object_points, image_points = board.matchImagePoints(corners, ids)
    return View(path.name, size, len(ids), len(markers), top_marker, collinear,
                np.asarray(object_points, dtype=np.float32).reshape(-1, 3),
                np.asarray(image_points, dtype=np.float32).reshape(-1, 2))


def detect_views(paths: Sequence[Path], spec: BoardSpec, progress: Progress) -> list[View]:
    """Detect the board in every image, one progress line each."""
    board = make_board(spec)
    detector = cv2.aruco.CharucoDetector(board)
    views = []
    for index, path in enumerate(paths, start=1):
        view = detect_view(detector, board, path)
        progress(f"[{index}/{len(paths)}] {path.name}: {view.corners} corners ({view.markers} markers)"
                 + (", on one line: not usable" if view.collinear else ""))
        views.append(view)
    return views


def fit_intrinsics(views: Sequence[View], image_size: tuple[int, int], options: CalibrationOptions
                   ) -> tuple[float, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """RMS reprojection error (px), camera matrix and distortion coefficients from the usable views."""
    flags = 0 if options.fit_k3 else cv2.CALIB_FIX_K3
    pairs = [v.points() for v in views]
    rms, fitted_matrix, fitted_dist, _, _ = cv2.calibrateCamera(
        [board for board, _ in pairs], [image for _, image in pairs], image_size, None, None, flags=flags)
    matrix = np.asarray(fitted_matrix, dtype=np.float64)
    dist = np.asarray(fitted_dist, dtype=np.float64).reshape(-1)
    if not (np.isfinite(rms) and np.isfinite(matrix).all() and np.isfinite(dist).all() and matrix[0, 0] > 0):
        raise CalibrationError("the fit did not converge: take more views, tilted in different directions, with the "
                               "board filling more of the image")
    return float(rms), matrix, dist


def fit_belt(view: View, matrix: npt.NDArray[np.float64], dist: npt.NDArray[np.float64], belt_image: str
             ) -> BeltRecord:
    """The homography from undistorted pixels to mm on the board lying on the belt, with its fit error."""
    object_points, image_points = view.points()
    undistorted = undistort_points(image_points, matrix, dist)
    board_mm = object_points[:, :2].astype(np.float64)
    homography, _ = cv2.findHomography(undistorted, board_mm, 0)
    if homography is None:
        raise CalibrationError(f"{belt_image}: no homography from its {view.corners} corners (board not flat?)")
    residual = apply_homography(homography, undistorted) - board_mm
    centre = np.array([[image / 2.0 for image in view.size]])
    steps = apply_homography(homography, undistort_points(centre + np.array([[0, 0], [1, 0], [0, 1]]), matrix, dist))
    mm_per_px = (np.linalg.norm(steps[1] - steps[0]) + np.linalg.norm(steps[2] - steps[0])) / 2.0
    return BeltRecord(image=belt_image, corners=view.corners, homography=homography.tolist(),
                      fit_error_mm=float(np.sqrt((residual ** 2).sum(axis=1).mean())), mm_per_px=float(mm_per_px))


def calibrate_camera(images: Sequence[Path], belt_image: Path, spec: BoardSpec, options: CalibrationOptions,
                     camera: str | None = None, progress: Progress = lambda _line: None) -> CameraGeometry:
    """The geometry from calibration images (files or folders) and one image of the board on the belt."""
    paths = image_files(images)
    progress(f"detecting the {spec.squares_x}x{spec.squares_y} board ({spec.dictionary}) in {len(paths)} images")
    views = detect_views(paths, spec, progress)
    (belt,) = detect_views([belt_image], spec, lambda line: progress(f"belt {line}"))
    image_size = same_size([*views, belt])
    problems = corner_problems(views, belt, options.min_corners, options.min_images)
    if problems:
        hint = board_hint([*views, belt], spec, markers_by_dictionary(paths[0], spec.dictionary), paths[0].name)
        raise CalibrationError("\n".join([*problems, hint]))
    used = [v for v in views if v.usable(options.min_corners)]
    progress(f"fitting the intrinsics on {len(used)} views")
    rms, matrix, dist = fit_intrinsics(used, image_size, options)
    progress(f"fitting the belt plane on {belt.name}")
    try:
        return CameraGeometry(
            schema=GEOMETRY_SCHEMA, camera=camera, created_at=utc_now(), image_size=image_size, board=spec,
            camera_matrix=matrix.tolist(), dist_coeffs=dist.tolist(), reprojection_error_px=rms,
            views=[ViewRecord(image=v.name, corners=v.corners) for v in used],
            belt=fit_belt(belt, matrix, dist, belt.name))
    except ValidationError as exc:  # a fit the daemon could not measure with: say why, never write it
        raise CalibrationError(f"the fit cannot measure: {'; '.join(format_validation_errors(exc))}") from None
