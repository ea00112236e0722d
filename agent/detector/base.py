"""The small interface every detector backend implements (torch-eager, torch-fast, onnx)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agent.detections import Detections


class DetectorError(RuntimeError):
    """A model that cannot be loaded or run; the message names the path or value at fault."""


class FrameError(ValueError):
    """A frame the detector cannot use (empty, wrong shape or dtype); the message says which and why."""


@runtime_checkable
class Detector(Protocol):
    """Frames in (BGR uint8 H x W x 3), one `Detections` per frame out, in the same order."""

    class_names: tuple[str, ...]
    version: str  # base model + adapter identity, carried in every result

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]: ...


def check_frame(frame: object, index: int = 0) -> npt.NDArray[np.uint8]:
    """Validate one BGR frame; raise `FrameError` naming the frame index and what is wrong."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"frame {index}: expected a numpy array, got {type(frame).__name__}")
    if frame.size == 0:
        raise FrameError(f"frame {index}: empty frame of shape {frame.shape}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"frame {index}: expected H x W x 3 (BGR), got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise FrameError(f"frame {index}: expected dtype uint8, got {frame.dtype}")
    return frame


def timed_detect(
    frames: Sequence[npt.NDArray[np.uint8]],
    preprocess: Callable[[Sequence[npt.NDArray[np.uint8]]], Any],
    generate: Callable[[Any], tuple[Any, Any]],
    to_detections: Callable[[list[int], Any, npt.NDArray[np.uint8]], Detections],
) -> tuple[list[Detections], dict[str, float]]:
    """What every backend's `detect` does: preprocess the batch, generate (tokens B x T, log-probs T x B x A), one
    `Detections` per frame; with the milliseconds each part took (for `last_timing`)."""
    t0 = time.perf_counter()
    pixels = preprocess(frames)
    t1 = time.perf_counter()
    tokens, log_probs = generate(pixels)
    t2 = time.perf_counter()
    results = [to_detections(tokens[i].tolist(), log_probs[:, i], frames[i]) for i in range(len(frames))]
    timing = {"preprocess_ms": (t1 - t0) * 1e3, "generate_ms": (t2 - t1) * 1e3,
              "total_ms": (time.perf_counter() - t0) * 1e3}
    return results, timing
