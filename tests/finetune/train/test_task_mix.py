"""The task mix: parsing, the cycle, which pool each step draws from (a pure function of seed and step, `<OD>` alone
exactly as before), and a mixed-task LoRA run on the tiny model that trains all three tasks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent.detector.loc import to_loc_text
from finetune.data.dataset import Dataset, TaskSample
from finetune.data.jsonl import read_jsonl
from finetune.lora import LoraSettings
from finetune.tiny import TinySpec, build_tiny_model
from finetune.train.batches import Batcher, batch_indices
from finetune.train.config import TrainConfig, TrainError
from finetune.train.run import train_lora
from finetune.train.task_mix import TaskMix, cycle_of, parse_task_mix, resolve_mix
from tests.finetune.lora_helpers import CLASSES, FAST_LORA, SIZE, frames, write_set


def test_a_mix_is_written_as_an_order_with_optional_weights() -> None:
    assert parse_task_mix("od=2, dense=1,grounding=1") == (("od", 2), ("dense", 1), ("grounding", 1))
    assert parse_task_mix("od,grounding") == (("od", 1), ("grounding", 1))
    for bad, message in [("od=two", "entry 'od=two': the weight must be a whole number"),
                         ("od,segment", r"\['od', 'segment'\]: each of \['od', 'dense', 'grounding'\] at most once"),
                         ("od,od", "at most once"), ("od=0", "at least one above 0"), ("od=-1,dense", ">= 0")]:
        with pytest.raises(TrainError, match=message):
            parse_task_mix(bad)
    with pytest.raises(TrainError, match="at most once"):
        TrainConfig(task_mix=(("od", 1), ("od", 2)))


def test_the_cycle_spreads_each_task_by_its_weight_in_the_order_written() -> None:
    assert cycle_of((("od", 2), ("dense", 1), ("grounding", 1))) == ["od", "dense", "grounding", "od"]
    assert cycle_of((("grounding", 1), ("od", 1))) == ["grounding", "od"]
    assert cycle_of((("od", 3), ("dense", 1))) == ["od", "od", "dense", "od"]


def test_the_default_mix_is_od_led_over_the_pools_the_data_has() -> None:
    assert resolve_mix(None, {"od": 5, "dense": 0, "grounding": 0}) == (("od", 1),)
    assert resolve_mix(None, {"od": 5, "dense": 2, "grounding": 0}) == (("od", 2), ("dense", 1))
    assert resolve_mix(None, {"od": 0, "dense": 2, "grounding": 3}) == (("dense", 1), ("grounding", 1))
    assert resolve_mix((("od", 1), ("dense", 0)), {"od": 5, "dense": 0}) == (("od", 1),)
    with pytest.raises(TrainError, match=r"task mix names \['grounding'\], but the training set has no such lines"):
        resolve_mix((("od", 1), ("grounding", 1)), {"od": 5, "dense": 2, "grounding": 0})


def test_each_step_draws_from_its_task_pool_as_a_pure_function_of_the_step() -> None:
    pools = {"od": list(range(10)), "dense": list(range(100, 103)), "grounding": list(range(200, 207))}
    mix = TaskMix(pools, (("od", 2), ("dense", 1), ("grounding", 1)))
    assert [mix.task_at(s) for s in range(6)] == [("od", 0), ("dense", 0), ("grounding", 0), ("od", 1), ("od", 2),
                                                  ("dense", 1)]
    drawn = [mix.batch(s, 2, seed=4) for s in range(40)]
    assert drawn == [mix.batch(s, 2, seed=4) for s in range(40)]  # resumable
    for task, items in drawn:
        assert set(items) <= set(pools[task])
    dense = [item for task, items in drawn if task == "dense" for item in items]
    assert sorted(dense[:3]) == [100, 101, 102]  # its first epoch (2 batches of 2 and 1) covers the pool once


def test_od_alone_draws_exactly_the_batches_a_run_drew_before_the_mix() -> None:
    mix = TaskMix({"od": list(range(9))}, resolve_mix(None, {"od": 9}))
    for step in range(12):
        task, items = mix.batch(step, 4, seed=3)
        assert task == "od" and items == batch_indices(9, 4, 3, step).tolist()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    """A tiny 64 px model and a set of 4 frames: their <OD> lines, a caption line and a grounding line each."""
    root = tmp_path_factory.mktemp("mixed")
    model = build_tiny_model(CLASSES, root / "model", TinySpec(image_size=SIZE, patch_strides=(4, 2, 1)))
    dataset = write_set(frames(8, 4), root / "data")
    lines = [(root / "data" / "annotations.jsonl").read_text()]
    for sample in dataset.samples:
        image = sample.image.relative_to(root / "data").as_posix()
        first = sample.detections[np.asarray([0])]
        caption = f"{first.labels[0]} on the weave"
        dense = to_loc_text(first).replace(first.labels[0], caption, 1)
        lines.append(json.dumps({"image": image, "prefix": "<DENSE_REGION_CAPTION>", "suffix": dense}) + "\n")
        lines.append(json.dumps({"image": image, "prefix": f"<CAPTION_TO_PHRASE_GROUNDING>{first.labels[0]}",
                                 "suffix": to_loc_text(first)}) + "\n")
    (root / "data" / "annotations.jsonl").write_text("".join(lines))
    return model, read_jsonl(root / "data")


def test_region_task_batches_carry_each_lines_own_prompt_and_answer(mixed: tuple[Path, Dataset]) -> None:
    from transformers import AutoProcessor

    model, dataset = mixed
    processor = AutoProcessor.from_pretrained(model)
    batcher = Batcher(processor, TrainConfig())
    lines: list[TaskSample] = dataset.tasks[:2]
    batch = batcher.regions(lines, np.random.default_rng(0))
    assert batch["pixel_values"].shape == (2, 3, SIZE, SIZE)
    answers = [processor.tokenizer.decode([t for t in row if t >= 0], skip_special_tokens=True)
               for row in batch["labels"].tolist()]
    assert answers == [line.target(line.detections.sorted_raster()) for line in lines]
    assert "on the weave" in answers[0]
    prompt = processor.tokenizer.decode(batch["input_ids"][1][batch["attention_mask"][1] == 1])
    assert prompt.endswith(f"caption: {lines[1].phrase}</s>")  # the processor expanded the task token


def test_a_mixed_task_run_trains_every_task_of_the_data(mixed: tuple[Path, Dataset], tmp_path: Path) -> None:
    model, dataset = mixed
    assert len(dataset.samples) == 4 and len(dataset.tasks) == 8
    config = replace(FAST_LORA, max_steps=4, batch_size=2, log_every=1, lora=LoraSettings(r=4, vision=False))
    result = train_lora(model, dataset, tmp_path / "adapter", config)
    tasks = [next(k for k in row if k.startswith("loss_")) for row in result.history]
    assert tasks == ["loss_od", "loss_dense", "loss_grounding", "loss_od"]  # the default mix, od=2:1:1
    assert all(np.isfinite(row["loss"]) for row in result.history)
    run = json.loads((result.run_dir / "config.json").read_text())
    assert run["tasks"] == {"mix": {"od": 2, "dense": 1, "grounding": 1}, "pools": {"od": 4, "dense": 4,
                            "grounding": 4}, "cycle": ["od", "dense", "grounding", "od"]}
    assert set(result.epochs[-1]["train_loss_by_task"]) <= {"od", "dense", "grounding"}
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    with pytest.raises(TrainError, match="task mix names"):
        train_lora(model, Dataset(CLASSES, dataset.samples), tmp_path / "od-only",
                   replace(config, task_mix=(("od", 1), ("dense", 1))))
