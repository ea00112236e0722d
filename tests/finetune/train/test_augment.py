"""Training augmentation: boxes cover the same pixels after flips and crops, light changes pixels only, and every
draw is reproducible from the seed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from agent.detections import Detections
from finetune.train.augment import augment_frame, crop_boxes, flip, jitter_light, random_crop
from finetune.train.config import AugmentSettings, TrainError
from tests.finetune.lora_helpers import CLASSES

WIDTH, HEIGHT = 96, 64
# one unique colour per box (BGR), none of them in the grey background
COLOURS = ((0, 0, 255), (0, 255, 0), (255, 0, 0))
BOXES = ((5.0, 6.0, 30.0, 20.0), (60.0, 30.0, 90.0, 62.0), (40.0, 2.0, 52.0, 50.0))
GEOMETRY_ONLY = AugmentSettings(brightness=0.0, contrast=0.0, min_scale=0.6)


def painted_frame() -> tuple[npt.NDArray[np.uint8], Detections]:
    """A grey frame whose box interiors are painted each in its own colour, and those boxes."""
    image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    for (x1, y1, x2, y2), colour in zip(BOXES, COLOURS):
        image[int(y1):int(y2), int(x1):int(x2)] = colour
    return image, Detections.from_labels(list(CLASSES), BOXES, CLASSES, (WIDTH, HEIGHT))


def colour_box(image: npt.NDArray[np.uint8], colour: tuple[int, int, int]) -> tuple[int, int, int, int] | None:
    """The tight box (x1, y1, x2, y2; far edges exclusive) of the pixels of exactly `colour`, None when absent."""
    ys, xs = np.nonzero((image == np.asarray(colour, np.uint8)).all(axis=2))
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_flips_map_boxes_exactly_onto_their_pixels() -> None:
    image, dets = painted_frame()
    for horizontal in (True, False):
        flipped, moved = flip(image, dets, horizontal)
        assert moved.image_size == (WIDTH, HEIGHT)
        for row, colour in zip(moved.xyxy, COLOURS):
            assert colour_box(flipped, colour) == tuple(int(v) for v in row)
    _, moved = flip(image, dets, horizontal=True)
    assert moved.xyxy[0].tolist() == [WIDTH - 30.0, 6.0, WIDTH - 5.0, 20.0]


@pytest.mark.parametrize("seed", range(40))
def test_augmented_boxes_enclose_the_same_pixels_within_a_pixel(seed: int) -> None:
    image, dets = painted_frame()
    out, moved = augment_frame(image, dets, np.random.default_rng(seed), GEOMETRY_ONLY)
    assert out.shape[1::-1] == moved.image_size
    kept = {CLASSES[int(c)] for c in moved.class_id}
    for name, colour in zip(CLASSES, COLOURS):
        region = colour_box(out, colour)
        if name not in kept:  # dropped: less than min_visible of the box is left in the crop
            visible = 0 if region is None else (region[2] - region[0]) * (region[3] - region[1])
            original = BOXES[CLASSES.index(name)]
            assert visible < GEOMETRY_ONLY.min_visible * (original[2] - original[0]) * (original[3] - original[1])
            continue
        row = moved.xyxy[moved.labels.index(name)]
        assert region is not None and np.abs(np.asarray(region) - row).max() <= 1.0, (name, region, row)
        assert (row[2:] - row[:2] >= 1.0).all()


def test_a_crop_clips_boxes_it_cuts_and_drops_those_mostly_outside() -> None:
    dets = Detections.from_labels(["hole", "hole", "stain"], [[10, 10, 30, 30], [45, 10, 65, 30], [0, 0, 50, 50]],
                                  CLASSES, (100, 100))
    cropped = crop_boxes(dets, (20, 0, 40, 40), min_visible=0.5)
    # box 1: 10 of 20 columns inside (50 %, kept, clipped); box 2: 15 of 20 inside; box 3: 30x40 of 50x50 = 48 %
    assert cropped.image_size == (40, 40)
    assert cropped.xyxy.tolist() == [[0, 10, 10, 30], [25, 10, 40, 30]]
    assert cropped.labels == ["hole", "hole"]


def test_a_sliver_is_never_kept_as_a_degenerate_box() -> None:
    dets = Detections.from_labels(["scratch"], [[39.5, 0, 60, 0.5]], CLASSES, (100, 100))
    assert len(crop_boxes(dets, (0, 0, 40, 40), min_visible=0.01)) == 0


def test_light_jitter_changes_pixels_only_and_stays_in_range() -> None:
    image, _ = painted_frame()
    out = jitter_light(image, np.random.default_rng(3), AugmentSettings(brightness=0.5, contrast=0.5))
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)
    unchanged = jitter_light(image, np.random.default_rng(3), AugmentSettings(brightness=0.0, contrast=0.0))
    assert np.array_equal(unchanged, image)


def test_augmentation_is_a_pure_function_of_the_seed() -> None:
    image, dets = painted_frame()
    settings = AugmentSettings()
    first = augment_frame(image, dets, np.random.default_rng([0, 2, 7]), settings)
    again = augment_frame(image, dets, np.random.default_rng([0, 2, 7]), settings)
    other = augment_frame(image, dets, np.random.default_rng([0, 2, 8]), settings)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1].xyxy, again[1].xyxy)
    assert not (first[0].shape == other[0].shape and np.array_equal(first[0], other[0]))


def test_no_crop_keeps_the_frame_whole() -> None:
    image, dets = painted_frame()
    out, moved = random_crop(image, dets, np.random.default_rng(0), AugmentSettings(min_scale=1.0))
    assert np.array_equal(out, image) and np.array_equal(moved.xyxy, dets.xyxy)


def test_out_of_range_settings_name_the_field() -> None:
    with pytest.raises(TrainError, match="augment.min_scale=0"):
        AugmentSettings(min_scale=0)
    with pytest.raises(TrainError, match="augment.hflip=1.5"):
        AugmentSettings(hflip=1.5)
