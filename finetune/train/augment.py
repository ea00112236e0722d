"""Image augmentation for LoRA training: flips, scale/crop jitter and brightness/contrast, boxes kept consistent.

Boxes are continuous pixel coordinates (x1, y1, x2, y2), x2/y2 being the far edges, so a box painted as
`image[y1:y2, x1:x2]` covers exactly the pixels it names. The geometric steps move boxes with the pixels:

- crop: a window of `s` x the frame's width and height (`s` drawn from [min_scale, 1], aspect kept) at a random
  position; the frame keeps the crop's size (the batcher resizes to the model's input anyway, so no resampling
  happens here). Boxes shift by the window's corner and are clipped to it. The rule for boxes the crop cuts: a box
  keeps its clipped part when at least `min_visible` of its area stays inside and the part is at least `MIN_SIDE`
  pixels wide and high; otherwise it is dropped (never a degenerate box);
- flips: horizontal `x -> width - x` (x1 and x2 swap roles), vertical alike: exact, no rounding.

Brightness/contrast change pixel values only: `(pixel - mean) * gain + mean + offset`, clipped to 0..255.
Every draw comes from the generator handed in, so a run's augmentation is a pure function of (seed, step).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agent.detections import Detections
from finetune.train.config import AugmentSettings

MIN_SIDE = 1.0  # pixels: a clipped box narrower or lower than this is dropped
Image = npt.NDArray[np.uint8]


def augment_frame(image: Image, dets: Detections, rng: np.random.Generator, settings: AugmentSettings
                  ) -> tuple[Image, Detections]:
    """One training frame augmented: crop, flips, then brightness/contrast; boxes follow the geometric steps."""
    image, dets = random_crop(image, dets, rng, settings)
    image, dets = random_flips(image, dets, rng, settings)
    return jitter_light(image, rng, settings), dets


def random_crop(image: Image, dets: Detections, rng: np.random.Generator, settings: AugmentSettings
                ) -> tuple[Image, Detections]:
    height, width = image.shape[:2]
    scale = float(rng.uniform(settings.min_scale, 1.0))
    crop_w, crop_h = max(1, round(width * scale)), max(1, round(height * scale))
    x0 = int(rng.integers(0, width - crop_w + 1))
    y0 = int(rng.integers(0, height - crop_h + 1))
    return image[y0:y0 + crop_h, x0:x0 + crop_w], crop_boxes(dets, (x0, y0, crop_w, crop_h), settings.min_visible)


def crop_boxes(dets: Detections, window: tuple[int, int, int, int], min_visible: float) -> Detections:
    """Boxes in the coordinates of the crop `window` = (x0, y0, width, height), clipped; see the module rule."""
    x0, y0, width, height = window
    shifted = dets.xyxy - np.asarray([x0, y0, x0, y0], dtype=np.float32)
    clipped = np.clip(shifted, 0, np.asarray([width, height, width, height], dtype=np.float32))
    sides = clipped[:, 2:] - clipped[:, :2]
    area = np.prod(np.maximum(dets.xyxy[:, 2:] - dets.xyxy[:, :2], 0), axis=1)
    visible = np.prod(np.maximum(sides, 0), axis=1) / np.maximum(area, 1e-9)
    keep = (visible >= min_visible) & (sides >= MIN_SIDE).all(axis=1)
    return Detections(clipped[keep], dets.class_id[keep], dets.score[keep], dets.class_names, (width, height))


def random_flips(image: Image, dets: Detections, rng: np.random.Generator, settings: AugmentSettings
                 ) -> tuple[Image, Detections]:
    if rng.random() < settings.hflip:
        image, dets = flip(image, dets, horizontal=True)
    if rng.random() < settings.vflip:
        image, dets = flip(image, dets, horizontal=False)
    return image, dets


def flip(image: Image, dets: Detections, horizontal: bool) -> tuple[Image, Detections]:
    """Mirror the frame left-right (or top-bottom) and its boxes with it, exactly."""
    width, height = dets.image_size
    xyxy = dets.xyxy.copy()
    if horizontal:
        xyxy[:, [0, 2]] = width - dets.xyxy[:, [2, 0]]
        flipped = image[:, ::-1]
    else:
        xyxy[:, [1, 3]] = height - dets.xyxy[:, [3, 1]]
        flipped = image[::-1]
    moved = Detections(xyxy, dets.class_id, dets.score, dets.class_names, dets.image_size)
    return np.ascontiguousarray(flipped), moved


def jitter_light(image: Image, rng: np.random.Generator, settings: AugmentSettings) -> Image:
    """Brightness offset and contrast gain around the frame's mean; pixels only, clipped to 0..255."""
    gain = float(rng.uniform(1 - settings.contrast, 1 + settings.contrast))
    offset = float(rng.uniform(-settings.brightness, settings.brightness)) * 255
    pixels = image.astype(np.float32)
    mean = float(pixels.mean())
    return np.clip((pixels - mean) * gain + mean + offset, 0, 255).round().astype(np.uint8)
