"""The queue's frame files: PNGs are lossless, writes are atomic, only old orphans are swept."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from agent.learn.frames import encode_png, remove_orphans, write_atomically
from tests.agent.learn.helpers import GEN


def test_png_encoding_is_lossless_and_writes_leave_no_temporary_file(tmp_path: Path) -> None:
    image = GEN.frame(3).image
    write_atomically(tmp_path / "a.png", encode_png(image))
    stored = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_COLOR)
    assert stored is not None and np.array_equal(stored, image)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_only_unknown_files_older_than_the_grace_period_are_removed(tmp_path: Path) -> None:
    for name in ("known.png", "old-orphan.png", "new-orphan.png"):
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - 3600
    os.utime(tmp_path / "old-orphan.png", (old, old))
    os.utime(tmp_path / "known.png", (old, old))
    assert remove_orphans(tmp_path, {"known.png"}, grace_s=300.0) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known.png", "new-orphan.png"]
