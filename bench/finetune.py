"""LoRA training throughput and peak memory: gradient checkpointing on vs off, and our loop vs a plain HF `Trainer`.

Every configuration runs in its own subprocess (so each peak memory is its own: CUDA max allocated, else peak RSS)
on the same model, data and batch size, in one invocation; ratios are taken between these side-by-side runs.

    python -m bench.finetune                       # CPU: tiny Florence-2 (256 px), batch 4
    python -m bench.finetune --arch base --size 768 --batch 8   # GPU: Florence-2-base architecture, random init

Writes bench/results/finetune-<device>-<arch>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CONFIGS: dict[str, dict[str, Any]] = {
    "ours_ckpt_on": {"loop": "ours", "checkpointing": True},
    "ours_ckpt_off": {"loop": "ours", "checkpointing": False},
    "hf_trainer_ckpt_on": {"loop": "hf", "checkpointing": True},
    "hf_trainer_ckpt_off": {"loop": "hf", "checkpointing": False},
}


def build_model(arch: str, size: int, out: Path) -> Path:
    """The tiny model, or Florence-2-base's widths (random init, tiny tokenizer: speed only).

    Approximate: TinySpec builds one DaViT block per stage, where Florence-2-base has depths (1, 1, 9, 1).
    """
    from finetune.tiny import TinySpec, build_tiny_model

    if arch == "tiny":
        return build_tiny_model(("scratch", "hole", "stain"), out, TinySpec(image_size=size))
    base = TinySpec(image_size=size, vision_dims=(128, 256, 512, 1024), vision_heads=(4, 8, 16, 32),
                    patch_strides=(4, 2, 2, 2), window_size=12, d_model=768, layers=6, heads=12, ffn_dim=3072,
                    max_positions=1024)
    return build_tiny_model(("scratch", "hole", "stain"), out, base)


def make_data(out: Path, size: int, count: int) -> Path:
    from finetune.data.synth import write_synthetic

    write_synthetic(out, count, seed=0, size=size)
    return out


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration: warm-up steps, then timed steps; prints one JSON line."""
    import numpy as np
    import torch

    from finetune.data import read_dataset
    from finetune.lora import LoraSettings, enable_checkpointing
    from finetune.train.batches import align_classes, batch_indices, model_class_names
    from finetune.train.config import TrainConfig
    from finetune.train.trainer import LoraTrainer, peak_memory_mb

    spec = CONFIGS[args.config]
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(batch_size=args.batch, lora=LoraSettings(), gradient_checkpointing=spec["checkpointing"],
                         max_steps=args.steps + args.warmup)
    trainer = LoraTrainer(Path(args.model), config)
    samples = align_classes(read_dataset("jsonl", Path(args.data)), model_class_names(Path(args.model)))
    trainer.set_schedule(args.steps + args.warmup)
    batches = [trainer.batcher([samples[i] for i in batch_indices(len(samples), args.batch, 0, s)],
                               np.random.default_rng(s)) for s in range(args.steps + args.warmup)]
    losses: list[float] = []  # ours only: every step's loss (AMP shows here first if it goes wrong)
    if spec["loop"] == "hf":
        enable_checkpointing(trainer.model, spec["checkpointing"])
        seconds = hf_trainer_seconds(trainer, batches, args)
    else:
        seconds = ours_seconds(trainer, batches, args, losses)
    return {"config": args.config, **spec, "samples_per_s": args.steps * args.batch / seconds,
            "seconds": seconds, "peak_memory_mb": peak_memory_mb(trainer.device), "device": str(trainer.device),
            "amp": str(trainer.amp) if trainer.amp else None, "losses": losses}


def ours_seconds(trainer: Any, batches: list[Any], args: argparse.Namespace, losses: list[float]) -> float:
    import torch

    for batch in batches[: args.warmup]:
        losses.append(trainer.train_step(batch))
    sync(torch)
    start = time.perf_counter()
    for batch in batches[args.warmup :]:
        losses.append(trainer.train_step(batch))
    sync(torch)
    return time.perf_counter() - start


def hf_trainer_seconds(trainer: Any, batches: list[Any], args: argparse.Namespace) -> float:
    """transformers.Trainer over the same pre-built batches (batch size 1 of pre-collated batches)."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    warmup = args.warmup

    class Timer(TrainerCallback):
        start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == warmup:
                sync(torch)
                Timer.start = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=1, max_steps=len(batches),
                                          learning_rate=2e-4, report_to=[], save_strategy="no", logging_steps=10**6,
                                          bf16=trainer.amp is torch.bfloat16, fp16=trainer.amp is torch.float16,
                                          use_cpu=trainer.device.type == "cpu", dataloader_num_workers=0,
                                          disable_tqdm=True)
        hf = Trainer(model=trainer.model, args=training_args, train_dataset=batches,
                     data_collator=lambda items: items[0], callbacks=[Timer()])
        hf.train()
    sync(torch)
    return time.perf_counter() - Timer.start


def sync(torch: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(args.arch, args.size, Path(tmp) / "model")
        data = make_data(Path(tmp) / "data", args.size, max(args.batch * 2, 8))
        rows = []
        for name in CONFIGS:
            cmd = [sys.executable, "-m", "bench.finetune", "--worker", name, "--model", str(model), "--data",
                   str(data), "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    by = {r["config"]: r for r in rows}
    on, off, hf = by["ours_ckpt_on"], by["ours_ckpt_off"], by["hf_trainer_ckpt_on"]
    ratios = {"checkpointing_speed_ratio": on["samples_per_s"] / off["samples_per_s"],
              "checkpointing_memory_ratio": on["peak_memory_mb"] / off["peak_memory_mb"],
              "ours_vs_hf_speed_ratio": on["samples_per_s"] / hf["samples_per_s"]}
    return {"arch": args.arch, "image_size": args.size, "batch": args.batch, "steps": args.steps,
            "machine": platform.machine(), "python": platform.python_version(), "runs": rows, "ratios": ratios,
            "note": "CPU peak memory is the process's peak RSS (includes the Python/torch runtime)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--worker", choices=tuple(CONFIGS))
    parser.add_argument("--model")
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(argparse.Namespace(**{**vars(args), "config": args.worker}))))
        return
    result = run_all(args)
    RESULTS.mkdir(exist_ok=True)
    device = result["runs"][0]["device"].split(":")[0]
    path = RESULTS / f"finetune-{device}-{args.arch}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["ratios"]), f"-> {path}")


if __name__ == "__main__":
    main()
