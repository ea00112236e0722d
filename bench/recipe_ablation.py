"""The LoRA training recipe, each part on vs off: augmentation, hard-example mining, the three-stage schedule.

Every variant fine-tunes the same model (default the shipped demo model `models/demo`) on the same drifted synthetic
frames with the same seed and the same number of steps, and is scored on the same held-out drifted frames
(mAP50 by faster-coco-eval, `finetune.metrics.coco_metrics`). The drift: smaller defects (`--defect-scale`) on a
darker line (`--gain` times every pixel), as after a lens or lighting change. Variants:

- `baseline`: the trainer's defaults (warm-up + cosine at `--lr`, no augmentation, no mining);
- `augment`: baseline + `TrainConfig.augment = AugmentSettings()` (flips, crop jitter, brightness/contrast);
- `hard`: baseline + `hard_fraction` `--hard-fraction` (top of each batch by loss weighted x `--hard-weight`);
- `three-stage`: baseline with `schedule = "three-stage"` (lr 1e-4 -> 5e-5 -> 1e-5, vision LoRA unfrozen stage by
  stage; the preset adds vision LoRA, which the baseline does not have).

    python -m bench.recipe_ablation                       # small: 32 training frames, 40 steps, 40 held-out frames
    python -m bench.recipe_ablation --steps 300 --train-frames 200 --test-frames 200 --seeds 0,1,2

Writes bench/results/recipe_ablation.json (`--out`). A small run says little: compare the spread across seeds with
the differences between variants before changing a default.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from finetune.data.synth import write_frames

RESULTS = Path(__file__).parent / "results"
VARIANTS = ("baseline", "augment", "hard", "three-stage")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/demo"), help="base model directory")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--train-frames", type=int, default=32)
    parser.add_argument("--test-frames", type=int, default=40)
    parser.add_argument("--steps", type=int, default=40, help="training steps of every variant")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4, help="peak lr of the cosine variants (TrainConfig default)")
    parser.add_argument("--hard-fraction", type=float, default=0.2)
    parser.add_argument("--hard-weight", type=float, default=2.0)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds; each variant runs once per seed")
    parser.add_argument("--train-seed", type=int, default=3101, help="seed of the training frames")
    parser.add_argument("--test-seed", type=int, default=4202, help="seed of the held-out frames")
    parser.add_argument("--defect-scale", type=float, default=0.6, help="drift: defect size factor")
    parser.add_argument("--gain", type=float, default=0.7, help="drift: brightness gain on every pixel")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS / "recipe_ablation.json")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    return args


def drifted_frames(classes: Sequence[str], seed: int, count: int, size: int, args: argparse.Namespace) -> list[Any]:
    """Synthetic frames with ground truth, drifted: smaller defects, darker pixels."""
    import numpy as np

    from agent.capture.synthetic import SyntheticFrame, SyntheticGenerator

    generator = SyntheticGenerator(seed=seed, size=size, classes=classes, defect_scale=args.defect_scale)
    frames = generator.frames(count)
    return [SyntheticFrame(np.clip(f.image * args.gain, 0, 255).astype(np.uint8), f.detections, f.index)
            for f in frames]


def variant_config(name: str, seed: int, args: argparse.Namespace) -> Any:
    from finetune.train.config import AugmentSettings, TrainConfig

    base = TrainConfig(max_steps=args.steps, batch_size=args.batch, lr=args.lr, seed=seed, eval_map=False,
                       checkpoint_every=10**6, device=args.device, gradient_checkpointing=False)
    recipe: dict[str, Any] = {"baseline": {}, "augment": {"augment": AugmentSettings()},
                              "hard": {"hard_fraction": args.hard_fraction, "hard_weight": args.hard_weight},
                              "three-stage": {"schedule": "three-stage"}}[name]
    return replace(base, **recipe)


def held_out_map50(model: Path, adapter: Path | None, frames: Sequence[Any], classes: Sequence[str],
                   device: str) -> dict[str, Any]:
    """mAP50 (and per-class AP50) of the model + adapter on the held-out frames, as the detector runs it."""
    from agent.detector.florence2 import DetectorOptions, Florence2Detector
    from finetune.metrics import coco_metrics

    detector = Florence2Detector(model, adapter, options=DetectorOptions(device=device))
    predictions = [d for i in range(0, len(frames), 8) for d in detector.detect([f.image for f in frames[i:i + 8]])]
    metrics = coco_metrics([f.detections for f in frames], predictions, classes)
    return {"map50": round(metrics.map50, 4),
            "per_class_ap50": {k: None if v is None else round(v, 4) for k, v in metrics.per_class_ap50.items()}}


def run_variant(name: str, seed: int, train_set: Any, test: Sequence[Any], work: Path, args: argparse.Namespace
                ) -> dict[str, Any]:
    from finetune.train.run import train_lora

    started = time.perf_counter()
    adapter = work / f"{name}-seed{seed}"
    result = train_lora(args.model, train_set, adapter, variant_config(name, seed, args))
    trained = time.perf_counter() - started
    scores = held_out_map50(args.model, adapter, test, train_set.class_names, args.device)
    return {"variant": name, "seed": seed, "steps": result.steps, "final_loss": round(result.final_loss, 4),
            "train_seconds": round(trained, 1), **scores}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from agent.modeldir import read_class_names
    classes = read_class_names(args.model)
    size = model_input_size(args.model)
    started = time.perf_counter()
    test = drifted_frames(classes, args.test_seed, args.test_frames, size, args)
    runs = []
    with tempfile.TemporaryDirectory(prefix="recipe-ablation-") as tmp:
        train_set = write_frames(drifted_frames(classes, args.train_seed, args.train_frames, size, args), classes,
                                 Path(tmp) / "train")
        before = held_out_map50(args.model, None, test, classes, args.device)
        for seed in (int(s) for s in args.seeds.split(",")):
            for name in args.variants.split(","):
                runs.append(run_variant(name, seed, train_set, test, Path(tmp), args))
                print(json.dumps(runs[-1]), flush=True)
    return {"model": str(args.model), "frame_size": size, "classes": list(classes),
            "drift": {"defect_scale": args.defect_scale, "gain": args.gain},
            "train": {"seed": args.train_seed, "frames": args.train_frames, "steps": args.steps, "batch": args.batch,
                      "lr": args.lr, "hard_fraction": args.hard_fraction, "hard_weight": args.hard_weight},
            "held_out": {"seed": args.test_seed, "frames": args.test_frames, "boxes": sum(len(f.detections)
                                                                                         for f in test)},
            "before_training": before, "runs": runs, "summary": summarise(runs),
            "seconds": round(time.perf_counter() - started, 1), "machine": platform.machine(),
            "device": args.device, "threads": args.threads}


def model_input_size(model: Path) -> int:
    processor = json.loads((model / "processor_config.json").read_text())
    size = processor.get("image_processor", processor).get("size", {})
    return int(size.get("height", 768))


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: mean held-out mAP50 over seeds, its spread, and the change against the baseline."""
    import numpy as np

    by_variant: dict[str, list[float]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run["map50"])
    base = float(np.mean(by_variant["baseline"])) if "baseline" in by_variant else None
    return {name: {"mean_map50": round(float(np.mean(v)), 4), "min": min(v), "max": max(v), "seeds": len(v),
                   "vs_baseline": None if base is None else round(float(np.mean(v)) - base, 4)}
            for name, v in by_variant.items()}


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"before training: mAP50 {result['before_training']['map50']}")
    for name, row in result["summary"].items():
        print(f"{name:>12}: mAP50 {row['mean_map50']} (min {row['min']}, max {row['max']}, {row['seeds']} seed(s)), "
              f"vs baseline {row['vs_baseline']:+}")
    print(f"written: {args.out} in {result['seconds']} s")


if __name__ == "__main__":
    main()
