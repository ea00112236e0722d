"""Shared fixtures of the calibration tests: synthetic ChArUco images rendered once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.calibration.charuco_scene import BELT_POSE, VIEW_POSES, Scene


@pytest.fixture(scope="session")
def charuco_images(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Six board views (folder `views/`) and one image of the board on the belt, from the known camera."""
    folder = tmp_path_factory.mktemp("charuco")
    scene = Scene(seed=0)
    views = scene.write(folder / "views", VIEW_POSES)
    (belt,) = scene.write(folder / "belt", [BELT_POSE], prefix="belt")
    return views, belt
