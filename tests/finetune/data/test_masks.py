"""COCO segmentation (polygons, RLE) becomes instance masks; writing COCO keeps them as RLE."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.capture.synthetic import SyntheticGenerator
from finetune.data import AnnotationError
from finetune.data.coco import read_coco, write_coco
from finetune.data.masks import segmentation_mask
from finetune.data.synth import write_frames


def coco_set(root: Path, annotations: list[dict]) -> Path:
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((20, 30, 3), np.uint8))
    document = {"images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
                "categories": [{"id": 1, "name": "hole"}],
                "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, **a} for i, a in enumerate(annotations)]}
    (root / "annotations.json").write_text(json.dumps(document))
    return root


def test_polygon_segmentation_fills_its_outline() -> None:
    mask = segmentation_mask([[2, 2, 12, 2, 12, 8, 2, 8]], (30, 20))
    assert mask.shape == (20, 30) and 50 <= mask.sum() <= 80 and mask[5, 7] and not mask[15, 20]


def test_coco_polygons_and_rle_become_masks(tmp_path: Path) -> None:
    rle = {"size": [20, 30], "counts": [20 * 20 + 5, 4, 16, 4, 171]}  # a 4 x 2 block in columns 20-21
    root = coco_set(tmp_path / "set", [{"bbox": [2, 2, 10, 6], "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]]},
                                       {"bbox": [20, 5, 2, 4], "segmentation": rle}])
    dets = read_coco(root).samples[0].detections
    assert dets.mask is not None and dets.area_px.tolist()[1] == 8 and dets.mask[1, 5:9, 20:22].all()


def test_an_instance_without_segmentation_beside_masked_ones_is_reported(tmp_path: Path) -> None:
    root = coco_set(tmp_path / "set", [{"bbox": [2, 2, 10, 6], "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]]},
                                       {"bbox": [20, 5, 2, 4]}])
    with pytest.raises(AnnotationError, match=r"annotations\[1\].*no segmentation"):
        read_coco(root)


def test_an_rle_of_another_size_names_the_sizes(tmp_path: Path) -> None:
    root = coco_set(tmp_path / "set", [{"bbox": [2, 2, 10, 6], "segmentation": {"size": [10, 10], "counts": [100]}}])
    with pytest.raises(AnnotationError, match=r"RLE size \[10, 10\].*30x20 frame"):
        read_coco(root)


def test_synthetic_masks_survive_a_coco_round_trip(tmp_path: Path) -> None:
    generator = SyntheticGenerator(seed=3, size=64, with_masks=True, defect_free_fraction=0.0)
    written = write_frames(generator.frames(4), generator.classes, tmp_path / "synth")
    write_coco(written, tmp_path / "coco")
    back = read_coco(tmp_path / "coco")
    for before, after in zip(written.samples, back.samples, strict=True):
        assert before.detections.mask is not None and len(before.detections)
        np.testing.assert_array_equal(after.detections.mask, before.detections.mask)
        np.testing.assert_allclose(after.detections.xyxy, before.detections.xyxy, atol=1e-3)
