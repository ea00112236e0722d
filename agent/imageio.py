"""Reading images from disk with errors that name the file (OpenCV returns None silently)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt


class ImageReadError(ValueError):
    """An image file that is missing, empty or not decodable."""


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """BGR uint8 image from `path`; grayscale is expanded to 3 channels, alpha dropped."""
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageReadError(f"{path}: not a decodable image ({data.size} bytes)")
    return np.asarray(image, dtype=np.uint8)
