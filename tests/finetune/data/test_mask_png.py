"""PNG mask sets: connected components become instances; a mask of the wrong size names both sizes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from finetune.data import AnnotationError, ReadOptions, read_dataset

CLASSES = ("scratch", "hole")


def mask_set(root: Path, masks: dict[str, np.ndarray], size: tuple[int, int] = (48, 32),
             classes: tuple[str, ...] = CLASSES) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for name, mask in masks.items():
        cv2.imwrite(str(root / "images" / f"{name}.png"), np.full((size[1], size[0], 3), 90, np.uint8))
        if mask is not None:
            cv2.imwrite(str(root / "masks" / f"{name}.png"), mask.astype(np.uint8))
    return root


def test_each_connected_region_of_a_class_value_is_one_instance(tmp_path: Path) -> None:
    labels = np.zeros((32, 48), np.uint8)
    labels[2:6, 3:9] = 1  # scratch
    labels[20:25, 30:40] = 1  # another scratch, apart
    labels[10:16, 10:14] = 2  # hole
    dataset = read_dataset("masks", mask_set(tmp_path / "set", {"a": labels}))
    dets = dataset.samples[0].detections
    assert sorted(dets.labels) == ["hole", "scratch", "scratch"]
    assert sorted(dets.xyxy.tolist()) == [[3, 2, 9, 6], [10, 10, 14, 16], [30, 20, 40, 25]]
    assert dets.mask is not None and sorted(dets.area_px.tolist()) == [24, 24, 50]


def test_a_mask_of_another_size_names_both_files_and_sizes(tmp_path: Path) -> None:
    root = mask_set(tmp_path / "set", {"a": np.zeros((16, 16), np.uint8)})
    with pytest.raises(AnnotationError, match=r"mask .*a\.png is 16x16 but its image .*a\.png is 48x32"):
        read_dataset("masks", root)


def test_values_without_a_class_are_named(tmp_path: Path) -> None:
    labels = np.zeros((32, 48), np.uint8)
    labels[0:4, 0:4] = 7
    with pytest.raises(AnnotationError, match=r"pixel value\(s\) \[7\] name no class"):
        read_dataset("masks", mask_set(tmp_path / "set", {"a": labels}))


def test_a_binary_mask_of_a_one_class_set_reads_255_as_that_class(tmp_path: Path) -> None:
    labels = np.zeros((32, 48), np.uint8)
    labels[5:9, 5:9] = 255
    dataset = read_dataset("masks", mask_set(tmp_path / "set", {"a": labels}, classes=("defect",)))
    assert dataset.samples[0].detections.labels == ["defect"]


def test_an_image_without_a_mask_is_an_error_unless_taken_as_good(tmp_path: Path) -> None:
    root = mask_set(tmp_path / "set", {"a": np.zeros((32, 48), np.uint8), "b": None})
    with pytest.raises(AnnotationError, match=r"no mask file .*b\.png"):
        read_dataset("masks", root)
    dataset = read_dataset("masks", root, ReadOptions(unlabelled_as_good=True))
    assert [len(s.detections) for s in dataset.samples] == [0, 0]
