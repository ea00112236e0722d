"""Training data -> model inputs: the model's class order, prompts and targets per task, deterministic batch order.

`<OD>` frames are presented with one of `TrainConfig.tasks` (prompts derived from their boxes); the data set's own
region-task lines (`TaskSample`: region captions, phrase grounding) keep their prompt and answer (`Batcher.regions`).
Which pool a step trains is the task mix's (finetune/train/task_mix.py).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from agent.detections import Detections
from agent.detector.loc import to_loc_text
from agent.modeldir import MissingClassList, read_class_names
from finetune.data.dataset import Dataset, Sample, TaskSample, grounding_answer
from finetune.losses import label_ids
from finetune.train.augment import augment_frame
from finetune.train.config import GROUNDING, TrainConfig, TrainError


def model_class_names(model_dir: Path) -> tuple[str, ...]:
    """The base model's class list (`classes.txt`); a missing one is a `TrainError`."""
    try:
        return read_class_names(model_dir)
    except MissingClassList as exc:
        raise TrainError(f"{exc.path} does not exist: the model directory must list its classes, one per line"
                         ) from None


def dataset_hash(dataset: Dataset) -> str:
    """sha256 over the class list and every sample's image bytes and boxes (order-independent)."""
    rows = []
    for sample in dataset.samples:
        image = hashlib.sha256(sample.image.read_bytes()).hexdigest()
        rows.append(f"{image} {to_loc_text(sample.detections.sorted_raster())}")
    for line in dataset.tasks:  # none in an <OD>-only set, whose hash is therefore what it always was
        image = hashlib.sha256(line.image.read_bytes()).hexdigest()
        rows.append(f"{image} {line.prompt} {line.target(line.detections.sorted_raster())}")
    digest = hashlib.sha256("\n".join(dataset.class_names).encode())
    for row in sorted(rows):
        digest.update(f"\n{row}".encode())
    return "sha256:" + digest.hexdigest()


def align_classes(dataset: Dataset, class_names: Sequence[str], what: str = "data set", tokenizer: Any = None
                  ) -> list[Sample]:
    """Samples re-indexed into the model's class list; a class the model lacks is an error naming it and, given the
    model's tokenizer, saying what to do about it."""
    missing = [name for name in dataset.class_names if name not in class_names]
    if missing:
        hint = f" {new_class_hint(tokenizer, missing)}" if tokenizer is not None else ""
        raise TrainError(f"{what} class(es) {missing} are unknown to the model (model classes: "
                         f"{list(class_names)}).{hint}")
    return [Sample(s.image, Detections.from_labels(s.detections.labels, s.detections.xyxy, class_names,
                                                   s.image_size)) for s in dataset.samples]


def new_class_hint(tokenizer: Any, names: Sequence[str]) -> str:
    """What to do about classes a model was not built with: its tokenizer either spells them or it does not."""
    from finetune.tiny import can_spell

    scratch = "or train a tiny model for this data set from scratch: `edge-inspect model train --data DIR --out MODEL`"
    unspellable = [name for name in names if not can_spell(tokenizer, name)]
    if unspellable:
        return f"The model's tokenizer cannot spell {unspellable}: rename them, {scratch}."
    return ("The model's tokenizer spells them, so it can learn them: add them to classes.txt in the model directory "
            f"(one per line) and fine-tune again, {scratch}.")


def target_for(task: str, dets: Detections, rng: np.random.Generator, shuffle: bool) -> tuple[str, str]:
    """(prompt, target text) of one sample for `task`; grounding asks for one class present on the frame and is
    answered in Florence-2's form, the phrase once and then its boxes (what the grounding grammar decodes)."""
    ordered = in_order(dets, rng, shuffle)
    if task != GROUNDING or not len(dets):
        return ("<OD>" if task == GROUNDING else task), to_loc_text(ordered)
    label = str(rng.choice(sorted(set(dets.labels))))
    return task + label, grounding_answer(label, ordered[np.asarray(ordered.labels) == label])


def in_order(dets: Detections, rng: np.random.Generator, shuffle: bool) -> Detections:
    """The boxes in reading order, or in random order (suffix order augmentation)."""
    return dets[rng.permutation(len(dets))] if shuffle and len(dets) > 1 else dets.sorted_raster()


class Batcher:
    """Samples -> model inputs: pixels (as the detector preprocesses), prompt ids and -100-padded labels."""

    def __init__(self, processor: Any, config: TrainConfig) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        size = processor.image_processor.size
        self.size = (int(size["width"]), int(size["height"]))
        self.config = config
        self._prompts: dict[str, torch.Tensor] = {}

    def prompt_ids(self, prompt: str) -> torch.Tensor:
        """Florence's processor expands the task token and inserts the image tokens; cached per prompt."""
        if prompt not in self._prompts:
            dummy = np.zeros((8, 8, 3), np.uint8)
            self._prompts[prompt] = self.processor(text=[prompt], images=[dummy], return_tensors="pt").input_ids[0]
        return self._prompts[prompt]

    def __call__(self, samples: Sequence[Sample], rng: np.random.Generator, task: str | None = None,
                 augment_rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """Model inputs; given `augment_rng` and `config.augment`, frames and boxes are augmented (training only)."""
        frames, boxes = self.frames_and_boxes(samples, augment_rng)
        tasks = [task or str(rng.choice(list(self.config.tasks))) for _ in samples]
        pairs = [target_for(t, dets, rng, self.config.shuffle_boxes) for t, dets in zip(tasks, boxes)]
        return self.inputs(frames, pairs)

    def regions(self, lines: Sequence[TaskSample], rng: np.random.Generator,
                augment_rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """Model inputs of region-task lines: each line's own prompt, its answer for its (augmented) boxes."""
        frames, boxes = self.frames_and_boxes(lines, augment_rng)
        pairs = [(line.prompt, line.target(in_order(dets, rng, self.config.shuffle_boxes)))
                 for line, dets in zip(lines, boxes, strict=True)]
        return self.inputs(frames, pairs)

    def inputs(self, frames: Sequence[npt.NDArray[np.uint8]], pairs: Sequence[tuple[str, str]]
               ) -> dict[str, torch.Tensor]:
        """Pixels (as the detector preprocesses), prompt ids and -100-padded labels for (prompt, target) pairs."""
        from agent.detector.florence2 import preprocess_frames

        pixels = torch.from_numpy(preprocess_frames(frames, self.processor.image_processor, self.size))
        input_ids, attention = pad_prompts([self.prompt_ids(p) for p, _ in pairs], int(self.tokenizer.pad_token_id))
        return {"pixel_values": pixels, "input_ids": input_ids, "attention_mask": attention,
                "labels": label_ids(self.tokenizer, [t for _, t in pairs])}

    def frames_and_boxes(self, samples: Sequence[Sample | TaskSample], augment_rng: np.random.Generator | None
                         ) -> tuple[list[npt.NDArray[np.uint8]], list[Detections]]:
        """The frames as read and their boxes, both augmented when `config.augment` is set and a generator given."""
        from agent.imageio import read_image

        frames = [read_image(s.image) for s in samples]
        boxes = [s.detections for s in samples]
        if self.config.augment is None or augment_rng is None:
            return frames, boxes
        pairs = [augment_frame(f, d, augment_rng, self.config.augment) for f, d in zip(frames, boxes)]
        return [f for f, _ in pairs], [d for _, d in pairs]


def pad_prompts(prompts: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id tensors into (ids, attention mask)."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = 1
    return ids, mask


def batch_indices(n: int, batch_size: int, seed: int, step: int, stream: int = 0) -> npt.NDArray[np.int64]:
    """Indices of the samples in `step`: a fresh permutation per epoch, a pure function of (seed, stream, step);
    stream 0 is the `<OD>` pool (and every run without region tasks), the region tasks' pools have their own."""
    per_epoch = math.ceil(n / batch_size)
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch] if stream == 0 else [seed, epoch, stream]).permutation(n)
    return order[index * batch_size : (index + 1) * batch_size]
