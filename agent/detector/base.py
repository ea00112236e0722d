"""The small interface every detector backend implements (torch-eager, torch-fast, onnx)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
