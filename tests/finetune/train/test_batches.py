"""LoRA training data: the model's class list, targets per task, padded prompts, the pure per-step batch order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agent.detections import Detections
from finetune.data.dataset import Dataset, Sample
from finetune.train.batches import align_classes, batch_indices, model_class_names, pad_prompts, target_for
from finetune.train.config import TrainError
from tests.finetune.lora_helpers import CLASSES


def test_each_epoch_visits_every_sample_once_in_a_seeded_order() -> None:
    epoch = np.concatenate([batch_indices(10, 4, seed=3, step=s) for s in range(3)])
    assert sorted(epoch.tolist()) == list(range(10))
    assert np.array_equal(batch_indices(10, 4, 3, 4), batch_indices(10, 4, 3, 4))  # resumable: pure function
    assert not np.array_equal(epoch, np.concatenate([batch_indices(10, 4, 3, s) for s in range(3, 6)]))


def test_suffix_order_augmentation_shuffles_boxes_and_grounding_asks_for_one_class() -> None:
    dets = Detections.from_labels(["hole", "scratch", "hole"], [[50, 50, 60, 60], [0, 0, 10, 10], [20, 0, 30, 8]],
                                  CLASSES, (100, 100))
    rng = np.random.default_rng(0)
    assert target_for("<OD>", dets, rng, shuffle=False)[1].startswith("scratch<loc_0>")
    orders = {target_for("<OD>", dets, rng, shuffle=True)[1] for _ in range(30)}
    assert len(orders) > 1
    prompt, text = target_for("<CAPTION_TO_PHRASE_GROUNDING>", dets, np.random.default_rng(1), shuffle=False)
    label = prompt.removeprefix("<CAPTION_TO_PHRASE_GROUNDING>")
    assert label in {"hole", "scratch"} and text.count("<loc_") == 4 * dets.labels.count(label)
    empty = Detections.empty(CLASSES, (100, 100))
    assert target_for("<CAPTION_TO_PHRASE_GROUNDING>", empty, rng, shuffle=False) == ("<OD>", "")


def test_prompts_are_right_padded_with_an_attention_mask() -> None:
    ids, mask = pad_prompts([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_samples_are_reindexed_into_the_model_class_order(tmp_path: Path) -> None:
    dets = Detections.from_labels(["hole"], [[0, 0, 10, 10]], ("hole",), (40, 40))
    aligned = align_classes(Dataset(("hole",), [Sample(tmp_path / "a.png", dets)]), CLASSES)
    assert aligned[0].detections.class_names == CLASSES and aligned[0].detections.class_id.tolist() == [1]
    with pytest.raises(TrainError, match=r"training set class\(es\) \['stain'\] are unknown to the model"):
        align_classes(Dataset(("stain",), []), ("hole",), "training set")


def test_a_model_without_a_class_list_is_a_training_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="classes.txt does not exist: the model directory must list its classes"):
        model_class_names(tmp_path)
    (tmp_path / "classes.txt").write_text("scratch\n\nhole\n")
    assert model_class_names(tmp_path) == ("scratch", "hole")


def test_a_class_the_model_lacks_but_its_tokenizer_spells_comes_with_what_to_do() -> None:
    from finetune.tiny import build_tokenizer

    with pytest.raises(TrainError, match=r"\['rolled-in_scale'\] are unknown to the model .* tokenizer spells them, "
                                         r"so it can learn them: add them to classes.txt .*edge-inspect model train"):
        align_classes(Dataset(("rolled-in_scale",), []), CLASSES, "training set", build_tokenizer(CLASSES))


def test_training_batches_carry_the_augmented_boxes_and_validation_batches_the_originals(
        tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoProcessor

    from agent.detector.loc import to_loc_text
    from agent.imageio import read_image
    from finetune.losses import label_ids
    from finetune.train.augment import augment_frame
    from finetune.train.batches import Batcher
    from finetune.train.config import AugmentSettings, TrainConfig
    from tests.finetune.lora_helpers import frames, write_set

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    settings = AugmentSettings(min_scale=0.6)
    batcher = Batcher(processor, TrainConfig(augment=settings))
    samples = write_set(frames(5, 3), tmp_path / "data").samples
    batch = batcher(samples, np.random.default_rng(0), task="<OD>", augment_rng=np.random.default_rng(9))
    rng = np.random.default_rng(9)
    moved = [augment_frame(read_image(s.image), s.detections, rng, settings)[1] for s in samples]
    expected = label_ids(processor.tokenizer, [to_loc_text(d.sorted_raster()) for d in moved])
    assert torch.equal(batch["labels"], expected)
    assert batch["pixel_values"].shape[2:] == (batcher.size[1], batcher.size[0])
    plain = batcher(samples, np.random.default_rng(0), task="<OD>")  # no augment_rng: validation
    originals = label_ids(processor.tokenizer, [to_loc_text(s.detections.sorted_raster()) for s in samples])
    assert torch.equal(plain["labels"], originals) and not torch.equal(plain["labels"], expected)
