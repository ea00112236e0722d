"""The learning queue's frame files: lossless PNGs under `frames/`, written atomically, orphans swept on start.

A row is committed only after its PNG is in place, so every committed row has its frame; a PNG without a row (a
crash in between) is removed on the next start once it is a few minutes old.
"""

from __future__ import annotations

import os
import time
from collections.abc import Container
from pathlib import Path

import cv2
import numpy as np

from agent.learn.entry import QueueError

ORPHAN_GRACE_S = 300.0  # a PNG younger than this may belong to a row another process is about to commit


def encode_png(image: np.ndarray) -> bytes:
    """The frame as PNG bytes (lossless, so a stored frame is bit-exact as captured)."""
    ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise QueueError(f"PNG encoding failed for an image of shape {image.shape}")
    return buffer.tobytes()


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary sibling and rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def remove_orphans(frames_dir: Path, known: Container[str], grace_s: float = ORPHAN_GRACE_S) -> int:
    """Delete files in `frames_dir` whose names are not `known` and that are older than `grace_s`; returns how many."""
    cutoff = time.time() - grace_s
    removed = 0
    for path in frames_dir.iterdir():
        if path.name not in known and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
