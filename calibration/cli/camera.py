"""`edge-inspect calibrate camera`: a camera's pixel -> mm geometry from ChArUco board images (calibration/camera.py),
written where the daemon reads it (agent/geometry.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from agent.geometry import BoardSpec, CameraGeometry

calibrate_app = typer.Typer(no_args_is_help=True, help="Calibrate cameras: sizes in mm from ChArUco board images.")
HIGH_REPROJECTION_PX = 1.0  # above this the views are blurred, moving or the board is not flat


def parse_squares(value: str) -> tuple[int, int]:
    """`10x7` -> (10, 7): squares across, squares down."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
    if match is None:
        raise typer.BadParameter(f"{value!r} is not COLUMNSxROWS, e.g. 10x7 (squares across x squares down)")
    return int(match.group(1)), int(match.group(2))


def board_spec(squares: str, square_mm: float, marker_mm: float, dictionary: str, legacy: bool) -> BoardSpec:
    from pydantic import ValidationError

    from agent.config import format_validation_errors
    from agent.geometry import BoardSpec

    columns, rows = parse_squares(squares)
    try:
        return BoardSpec(squares_x=columns, squares_y=rows, square_mm=square_mm, marker_mm=marker_mm,
                         dictionary=dictionary, legacy_pattern=legacy)
    except ValidationError as exc:
        problems = "; ".join(format_validation_errors(exc))
        raise typer.BadParameter(f"board {columns}x{rows}, square {square_mm} mm, marker {marker_mm} mm, "
                                 f"{dictionary}: {problems}") from None


def destination(out: Path | None, config: Path | None, camera: str | None) -> tuple[Path, str | None]:
    """Where the geometry goes, and the camera it is for: --out, else the camera's file in the config."""
    from agent.config import ConfigError, load_settings
    from agent.geometry import geometry_path

    if out is not None:
        return out, camera
    if config is None:
        raise typer.BadParameter("give --config (the daemon's config: the camera's geometry path) or --out FILE")
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None
    names = [c.name for c in settings.cameras]
    if camera is None and len(names) != 1:
        raise typer.BadParameter(f"the config has cameras {names}: name one with --camera", param_hint="--camera")
    chosen = next((c for c in settings.cameras if c.name == (camera or names[0])), None)
    if chosen is None:
        raise typer.BadParameter(f"no camera {camera!r} in {config}; its cameras are {names}", param_hint="--camera")
    return geometry_path(chosen, settings.state_dir), chosen.name


def camera_command(
    images: list[Path] = typer.Argument(..., help="board images (files or folders) for the lens: 15-25 views, "
                                        "tilted, covering the whole image"),
    belt: Path = typer.Option(..., "--belt", help="one image of the board lying flat on the belt where parts are "
                              "inspected: sizes are measured on this plane"),
    squares: str = typer.Option(..., "--squares", help="the board's squares, across x down, e.g. 10x7"),
    square_mm: float = typer.Option(..., "--square-mm", help="side of one square in mm, measured on the print"),
    marker_mm: float = typer.Option(..., "--marker-mm", help="side of one ArUco marker in mm, measured on the print"),
    dictionary: str = typer.Option("DICT_5X5_100", "--dictionary", help="the board's ArUco dictionary"),
    legacy_pattern: bool = typer.Option(False, "--legacy-pattern", help="a board made by OpenCV before 4.6"),
    config: Path | None = typer.Option(None, "--config", "-c", help="the daemon's config: write to the camera's "
                                       "geometry path ({state_dir}/geometry/CAMERA.json unless it names one)"),
    camera: str | None = typer.Option(None, "--camera", help="which camera of the config (needed when it has more)"),
    out: Path | None = typer.Option(None, "--out", help="write the geometry file here instead"),
    min_corners: int = typer.Option(8, "--min-corners", min=4, help="a view with fewer corners is not used"),
    min_images: int = typer.Option(6, "--min-images", min=3, help="fewer usable views than this is an error"),
    k3: bool = typer.Option(False, "--k3/--no-k3", help="fit the third radial distortion term (wide-angle lenses)"),
) -> None:
    """Fit a camera's lens (intrinsics, distortion) and the belt plane from ChArUco board images, so results carry
    defect sizes in mm. Exit codes: 0 written, 1 the images cannot calibrate (the message says why), 2 bad option."""
    from agent.geometry import write_geometry
    from calibration.camera import CalibrationError, CalibrationOptions, calibrate_camera

    spec = board_spec(squares, square_mm, marker_mm, dictionary, legacy_pattern)
    path, camera_name = destination(out, config, camera)
    options = CalibrationOptions(min_corners=min_corners, min_images=min_images, fit_k3=k3)
    try:
        geometry = calibrate_camera(images, belt, spec, options, camera_name, progress=typer.echo)
    except CalibrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    report(geometry)
    try:
        written = write_geometry(path, geometry)
    except OSError as exc:  # e.g. the state dir belongs to the daemon's user: run as that user, or use --out
        typer.echo(f"error: cannot write {path}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"written: {written} (the daemon reads it at start and on reload)")


def report(geometry: CameraGeometry) -> None:
    """What a technician checks: focal length, reprojection error, the belt fit and scale."""
    k, belt = geometry.camera_matrix, geometry.belt
    typer.echo(f"focal length {k[0][0]:.1f} x {k[1][1]:.1f} px, centre ({k[0][2]:.1f}, {k[1][2]:.1f}), distortion "
               f"{', '.join(f'{c:.4f}' for c in geometry.dist_coeffs)}")
    typer.echo(f"reprojection error {geometry.reprojection_error_px:.3f} px over {len(geometry.views)} views")
    typer.echo(f"belt plane: {belt.corners} corners, fit error {belt.fit_error_mm:.3f} mm, "
               f"{belt.mm_per_px:.4f} mm per pixel at the image centre")
    if geometry.reprojection_error_px > HIGH_REPROJECTION_PX:
        typer.echo(f"warning: a reprojection error above {HIGH_REPROJECTION_PX} px means blurred or moving views or a "
                   "board that is not flat: sizes will be off; retake the images", err=True)


def board_command(
    out: Path = typer.Option(..., "--out", help="the PNG to write (print it at 100 %, never 'fit to page')"),
    squares: str = typer.Option("10x7", "--squares", help="squares across x down"),
    square_mm: float = typer.Option(15.0, "--square-mm", help="side of one square in mm"),
    marker_mm: float = typer.Option(11.0, "--marker-mm", help="side of one ArUco marker in mm"),
    dictionary: str = typer.Option("DICT_5X5_100", "--dictionary", help="the ArUco dictionary"),
    dpi: int = typer.Option(600, "--dpi", min=72, max=2400, help="the printer's resolution, stored in the PNG"),
) -> None:
    """Write a ChArUco board to print, and the `calibrate camera` options that describe it."""
    from PIL import Image

    from calibration.camera import CalibrationError, board_image

    spec = board_spec(squares, square_mm, marker_mm, dictionary, False)
    try:
        image = board_image(spec, dpi)
    except CalibrationError as exc:
        raise typer.BadParameter(str(exc)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(out, dpi=(dpi, dpi))
    width, height = (round(side * 25.4 / dpi) for side in (image.shape[1], image.shape[0]))
    typer.echo(f"written: {out} ({width} x {height} mm with its margin at {dpi} dpi); print it at 100 %, glue it "
               "flat on something rigid, measure a square with a caliper and give what you measure as --square-mm")
    typer.echo(f"then: edge-inspect calibrate camera IMAGES --belt BELT_IMAGE --squares {squares} "
               f"--square-mm {square_mm:g} --marker-mm {marker_mm:g} --dictionary {dictionary}")


calibrate_app.command("board")(board_command)
calibrate_app.command("camera")(camera_command)
