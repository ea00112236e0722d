"""The tiny recipe on a user's data set: grey 200x200 images of classes the demo model never saw, as a JSONL set on
disk, become training frames at the model's size, and a few steps give a saved, loadable model for those classes
with held-out mAP50 written beside it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from agent.detections import Detections
from finetune.data.dataset import Dataset, Sample
from finetune.tiny_train.dataset_frames import dataset_frames, scale_detections, split_dataset
from finetune.tiny_train.from_data import DataRecipe, check_sets, train_on_dataset
from tests.finetune.grey_sets import STEEL, grey_set


def test_boxes_scale_with_the_image() -> None:
    dets = Detections.from_labels(["crazing"], [[20, 40, 100, 200]], STEEL, (200, 200))
    scaled = scale_detections(dets, (128, 64))
    assert scaled.image_size == (128, 64)
    assert scaled.xyxy[0].tolist() == pytest.approx([12.8, 12.8, 64.0, 64.0])


def test_grey_images_become_three_channel_frames_at_the_model_size(tmp_path: Path) -> None:
    dataset = grey_set(tmp_path / "set", count=2)
    on_disk = cv2.imread(str(dataset.samples[0].image), cv2.IMREAD_UNCHANGED)
    assert on_disk is not None and on_disk.ndim == 2  # really grey on disk
    frames = dataset_frames(dataset, ("other", *STEEL), (128, 128))
    assert frames[0].image.shape == (128, 128, 3)
    truth = dataset.samples[0].detections
    assert frames[0].detections.labels == truth.labels and frames[0].detections.class_names == ("other", *STEEL)
    assert frames[0].detections.xyxy[0].tolist() == pytest.approx((truth.xyxy[0] * 0.64).tolist())


def test_a_class_the_model_lacks_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\['rolled-in_scale'\] are not among the model's classes"):
        dataset_frames(grey_set(tmp_path / "set", count=2), ("crazing",), (128, 128))


def test_the_held_out_split_is_seeded_disjoint_and_keeps_the_class_list(tmp_path: Path) -> None:
    dataset = Dataset(STEEL, [Sample(tmp_path / f"{i}.png", Detections.empty(STEEL, (8, 8))) for i in range(20)])
    train, held = split_dataset(dataset, 0.25, seed=3)
    assert len(held) == 5 and len(train) == 15 and train.class_names == held.class_names == STEEL
    assert not {s.image for s in train} & {s.image for s in held}
    assert [s.image for s in split_dataset(dataset, 0.25, seed=3)[1]] == [s.image for s in held]
    with pytest.raises(ValueError, match="leaves no training or no held-out image"):
        split_dataset(Dataset(STEEL, dataset.samples[:1]), 0.25)


def test_a_held_out_class_missing_from_training_is_refused(tmp_path: Path) -> None:
    train = Dataset(("crazing",), [Sample(tmp_path / "a.png", Detections.empty(("crazing",), (8, 8)))])
    held = Dataset(STEEL, [Sample(tmp_path / "b.png", Detections.empty(STEEL, (8, 8)))])
    with pytest.raises(ValueError, match=r"held-out class\(es\) \['rolled-in_scale'\] are not in the training"):
        check_sets(train, held)


def test_only_the_recipe_input_sizes_are_accepted() -> None:
    assert DataRecipe(image_size=256).spec().grid == DataRecipe(image_size=128).spec().grid == 16
    with pytest.raises(ValueError, match="image_size=200: must be one of"):
        DataRecipe(image_size=200).spec()


def test_a_few_steps_on_grey_images_save_a_loadable_model_for_the_new_classes(tmp_path: Path) -> None:
    from agent.detector.florence2 import Florence2Detector
    from agent.imageio import read_image

    dataset = grey_set(tmp_path / "set", count=6)
    train, held = split_dataset(dataset, 0.34, seed=0)
    summary = train_on_dataset(train, held, tmp_path / "model", DataRecipe(steps=3, batch_size=4))
    assert summary["classes"] == list(STEEL) and summary["steps"] == 3 and len(summary["final_loss"]) == 4
    assert summary["held_out_images"] == 2 and 0.0 <= summary["held_out"]["map50"] <= 1.0
    assert json.loads((tmp_path / "model" / "train_metrics.json").read_text())["held_out"] == summary["held_out"]
    assert (tmp_path / "model" / "eval" / "metrics.json").is_file()
    detector = Florence2Detector(tmp_path / "model")
    assert detector.class_names == STEEL
    found = detector.detect([read_image(held.samples[0].image)])
    assert found[0].image_size == (200, 200) and found[0].class_names == STEEL
