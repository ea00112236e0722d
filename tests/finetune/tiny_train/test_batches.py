"""The tiny recipe's batches: per-cell targets, flips that keep pixels and boxes together, the token grid."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agent.detections import Detections
from finetune.tiny_train.batches import TinyBatcher, cell_targets, flip_frame, grid_size

CLASSES = ("scratch", "hole", "stain")


def _dets(boxes: list[list[float]], ids: list[int], size: int = 100) -> Detections:
    return Detections(np.asarray(boxes, dtype=np.float32), ids, np.ones(len(ids)), CLASSES, (size, size))


def test_cell_targets_mark_cells_whose_centre_is_inside_a_box() -> None:
    classes, boxes = cell_targets(_dets([[0, 0, 50, 25]], [2]), grid=4)
    grid = classes.reshape(4, 4)
    assert grid[0, :2].tolist() == [3, 3] and grid[0, 2:].tolist() == [0, 0]
    assert grid[1:].sum() == 0
    assert boxes.reshape(4, 4, 4)[0, 0].tolist() == [0, 0, 500, 250]
    assert (boxes.reshape(4, 4, 4)[1:] == -1).all()


def test_a_defect_smaller_than_a_cell_still_owns_the_cell_of_its_centre() -> None:
    classes, _ = cell_targets(_dets([[60, 60, 64, 64]], [1]), grid=4)
    assert classes.reshape(4, 4)[2, 2] == 2
    assert (classes > 0).sum() == 1


def test_flip_mirrors_pixels_and_boxes_together() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    image[10:20, 0:30] = 255
    flipped, dets = flip_frame(image, _dets([[0, 10, 30, 20]], [0]), horizontal=True, vertical=True)
    x1, y1, x2, y2 = (int(v) for v in dets.xyxy[0])
    assert (x1, y1, x2, y2) == (70, 80, 100, 90)
    assert flipped[y1:y2, x1:x2].min() == 255 and flipped.sum() == image.sum()


def test_the_grid_side_comes_from_the_processor_image_sequence_length(tiny_model_dir: Path) -> None:
    from transformers import AutoProcessor

    assert grid_size(AutoProcessor.from_pretrained(tiny_model_dir)) == 16  # 256 px, total stride 16
    odd = SimpleNamespace(image_processor=SimpleNamespace(image_seq_length=18))
    with pytest.raises(ValueError, match="is not grid"):
        grid_size(odd)


def test_a_grey_frame_gives_the_same_pixels_as_its_three_channel_copy(tiny_model_dir: Path) -> None:
    from transformers import AutoProcessor

    batcher = TinyBatcher(AutoProcessor.from_pretrained(tiny_model_dir), grid=16, flip=False)
    grey = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    three = np.repeat(grey[:, :, None], 3, axis=2)
    assert torch.equal(batcher.pixels([grey]), batcher.pixels([three]))
