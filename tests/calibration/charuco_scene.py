"""Synthetic ChArUco images with a known camera: the board rendered by OpenCV (`board.generateImage`), seen by a
pinhole camera with known intrinsics and radial distortion at known poses, slightly blurred, with sensor noise.

Ground truth for the camera-calibration tests: the focal length a fit must recover and the pixels where points of
known mm on the belt plane appear (`belt_pixels`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from agent.geometry import BoardSpec
from calibration.camera import make_board

SPEC = BoardSpec(squares_x=10, squares_y=7, square_mm=8.0, marker_mm=6.0, dictionary="DICT_5X5_100")
SIZE = (640, 480)
FOCAL = 800.0
CAMERA_MATRIX = np.array([[FOCAL, 0.0, 322.0], [0.0, FOCAL, 238.0], [0.0, 0.0, 1.0]])
DISTORTION = np.array([-0.12, 0.05, 0.0, 0.0, 0.0])  # mild barrel distortion, as a machine-vision lens has
PX_PER_MM = 16  # resolution of the rendered board texture
_CENTRE = (-SPEC.squares_x * SPEC.square_mm / 2, -SPEC.squares_y * SPEC.square_mm / 2)  # board centred on the axis
# (rotation vector, translation in mm): tilted up to ~25 degrees every way, 145-155 mm from the camera
VIEW_POSES = [
    ((0.35, 0.2, 0.05), (_CENTRE[0], _CENTRE[1], 150.0)),
    ((-0.35, 0.3, -0.1), (_CENTRE[0] - 10, _CENTRE[1] + 5, 150.0)),
    ((0.3, -0.4, 0.2), (_CENTRE[0] + 10, _CENTRE[1] - 5, 145.0)),
    ((-0.25, -0.35, 0.0), (_CENTRE[0], _CENTRE[1], 150.0)),
    ((0.45, 0.0, 0.3), (_CENTRE[0] + 5, _CENTRE[1], 150.0)),
    ((0.0, 0.45, -0.2), (_CENTRE[0], _CENTRE[1] + 5, 155.0)),
]
BELT_POSE = ((0.12, -0.08, 0.3), (_CENTRE[0], _CENTRE[1], 170.0))  # a camera looking down at the belt, a little tilted


@dataclass
class Scene:
    """Renders the board at poses; `seed` fixes the noise."""

    spec: BoardSpec = SPEC
    size: tuple[int, int] = SIZE
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        texture = make_board(self.spec).generateImage(
            (self.spec.squares_x * int(self.spec.square_mm) * PX_PER_MM,
             self.spec.squares_y * int(self.spec.square_mm) * PX_PER_MM), marginSize=0, borderBits=1)
        margin = int(self.spec.square_mm) * PX_PER_MM  # white paper around the squares
        self.texture = cv2.copyMakeBorder(texture, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)
        self.margin = margin

    def render(self, pose: tuple[tuple[float, ...], tuple[float, ...]]) -> npt.NDArray[np.uint8]:
        """The camera's grey image of the board at `pose` (board mm -> camera), on a grey background."""
        w, h = self.size
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        seen = cv2.undistortImagePoints(np.stack([xs.ravel(), ys.ravel()], 1).reshape(-1, 1, 2),
                                        CAMERA_MATRIX, DISTORTION).reshape(-1, 2)  # the ray each pixel sees
        board_px = cv2.perspectiveTransform(seen.reshape(-1, 1, 2), self._pixels_to_texture(pose)).reshape(h, w, 2)
        image = cv2.remap(self.texture, board_px[..., 0].astype(np.float32), board_px[..., 1].astype(np.float32),
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=128)
        image = cv2.GaussianBlur(image, (3, 3), 0.7)
        return np.clip(image + self.rng.normal(0.0, 3.0, image.shape), 0, 255).astype(np.uint8)

    def _pixels_to_texture(self, pose: tuple[tuple[float, ...], tuple[float, ...]]) -> npt.NDArray[np.float64]:
        rotation, _ = cv2.Rodrigues(np.asarray(pose[0], dtype=np.float64))
        plane_to_pixels = CAMERA_MATRIX @ np.column_stack([rotation[:, 0], rotation[:, 1], pose[1]])
        mm_to_texture = np.array([[PX_PER_MM, 0, self.margin], [0, PX_PER_MM, self.margin], [0, 0, 1.0]])
        return np.asarray(mm_to_texture @ np.linalg.inv(plane_to_pixels), dtype=np.float64)

    def write(self, folder: Path, poses: list[tuple[tuple[float, ...], tuple[float, ...]]], prefix: str = "view"
              ) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{prefix}{i:02d}.png" for i in range(len(poses))]
        for path, pose in zip(paths, poses, strict=True):
            cv2.imwrite(str(path), self.render(pose))
        return paths


def belt_pixels(points_mm: npt.ArrayLike, pose: tuple[tuple[float, ...], tuple[float, ...]] = BELT_POSE
                ) -> npt.NDArray[np.float64]:
    """Where points on the belt plane (mm, the board's axes) appear in the camera's image (distortion included)."""
    points = np.column_stack([np.asarray(points_mm, dtype=np.float64).reshape(-1, 2), np.zeros(len(points_mm))])
    pixels, _ = cv2.projectPoints(points, np.asarray(pose[0], dtype=np.float64), np.asarray(pose[1], dtype=np.float64),
                                  CAMERA_MATRIX, DISTORTION)
    return np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
