"""Which learner can learn the active-learning drift at all? (issue 12, point 4; not a test)

`bench/active_learning.py` found every sampler within 0.02 mAP50 of the others because the line's LoRA adapter did
not learn the drift even on the frames it trained on. This bench takes the sampler out: it trains on the first
`--labels` frames of the drifted pool (a random pick: the pool is i.i.d.) plus as many original replay frames, from
`models/demo`, with the tiny recipe's own loop (`finetune.tiny_train.trainer.TinyTrainer`: batch 16, AdamW with
warm-up and cosine decay, Gaussian `<loc>` targets of sigma `--sigma`), and changes only *what* trains:

- `full`: every weight of the model (`--cell-weight` 1 keeps the recipe's per-cell heads on the encoder, 0 drops them);
- `parts`: every weight of `--parts` only, the rest frozen (e.g. the vision tower and projector);
- `lora`: a LoRA adapter of rank `--r` (text side; `--vision` also the vision tower), per-cell heads on;
- `whole`: the line's `recalibration.lora_whole` adapter: `--parts` trained whole inside the adapter (PEFT
  modules_to_save) plus LoRA of rank `--r` on the text side, LM loss only (what `edge-inspect recalibrate` trains).

Each run is scored (mAP50) on the scenario's 200 held-out drifted and 200 original frames and on the first 200 pool
frames it trained on, and appended to `--out` (default bench/results/drift_learners.json):

    python -m bench.drift_learners --learner full --cell-weight 0 --labels 200 --steps 600 --lr 1e-3
    python -m bench.drift_learners --learner whole --parts vision_tower multi_modal_projector --r 64

One 600-step run takes 5-8 minutes on this project's 2 CPU cores. Results: docs/training.md, "Active learning under
drift".
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
CLASSES = ("scratch", "hole", "stain")
LEARNERS = ("full", "parts", "lora", "whole")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learner", choices=LEARNERS, required=True)
    parser.add_argument("--parts", nargs="+", default=["vision_tower", "multi_modal_projector"],
                        help="parts of `model` trained whole (learners parts and whole)")
    parser.add_argument("--cell-weight", type=float, default=1.0, help="per-cell head losses' weight (full, parts)")
    parser.add_argument("--r", type=int, default=16, help="LoRA rank (lora, whole); alpha is 2 r")
    parser.add_argument("--vision", action="store_true", help="lora: also the vision tower")
    parser.add_argument("--labels", type=int, default=200, help="drifted frames trained on (plus as many replay)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sigma", type=float, default=1.5, help="Gaussian <loc> target width, in bins")
    parser.add_argument("--held-out", type=int, default=200, help="held-out frames, drifted and original, each")
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "drift_learners.json")
    return parser.parse_args(argv)


def frames(name: str, count: int, drifted: bool, size: int) -> list[Any]:
    """The active-learning scenario's frames (same generator seeds and drift)."""
    from bench.active_learning_scenario import scenario_frames

    return scenario_frames(name, count, drifted, size, CLASSES)


def restrict_training(trainer: Any, params: list[Any], lr: float) -> None:
    """Train only `params` (and the per-cell heads) in this trainer's loop."""
    heads = list(trainer.heads.parameters())
    trainer.parameter_groups = lambda: [{"params": params, "lr": lr}, {"params": heads, "lr": lr}]
    trainer.trainable = lambda: params + heads


def prepare(trainer: Any, args: argparse.Namespace) -> bool:
    """Set up what trains; True when the result is an adapter (saved as one), False for a whole model."""
    from finetune.lora import LoraSettings, add_lora

    base = trainer.model
    if args.learner == "parts":
        params = [p for name, p in base.named_parameters() if name.split(".")[1] in args.parts]
        chosen = {id(p) for p in params}
        for param in base.parameters():
            param.requires_grad_(id(param) in chosen)
        restrict_training(trainer, params, args.lr)
        return False
    if args.learner == "full":
        return False
    if args.learner == "lora":
        trainer.model = add_lora(base, LoraSettings(r=args.r, alpha=2 * args.r, vision=args.vision))
    else:  # whole: the adapter recalibration.lora_whole makes
        trainer.model = add_lora(base, LoraSettings(r=args.r, alpha=2 * args.r, whole=tuple(args.parts)))
    restrict_training(trainer, [p for p in trainer.model.parameters() if p.requires_grad], args.lr)
    return True


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from agent.detector.factory import create_detector
    from bench.active_learning import image_size
    from bench.active_learning_scenario import map50_of
    from finetune.lora import save_adapter
    from finetune.tiny_train.trainer import TinyTrainConfig, TinyTrainer

    torch.set_num_threads(args.threads)
    size = image_size(args.model)
    pool, replay = frames("pool", args.labels, True, size), frames("replay", args.labels, False, size)
    cell = args.cell_weight if args.learner in ("full", "parts") else (1.0 if args.learner == "lora" else 0.0)
    config = TinyTrainConfig(steps=args.steps, batch_size=16, seed=0, lr=args.lr,
                             warmup_steps=min(30, args.steps // 5), loc_sigma=args.sigma,
                             cell_class_weight=cell, cell_box_weight=cell)
    trainer = TinyTrainer(args.model, config)
    adapter = prepare(trainer, args)
    trainable = sum(p.numel() for p in trainer.trainable())
    started = time.perf_counter()
    result = trainer.fit(pool + replay)
    seconds = time.perf_counter() - started
    if adapter:
        detector = create_detector("torch-eager", args.model, save_adapter(trainer.model, work / "adapter"), CLASSES)
    else:
        detector = create_detector("torch-eager", trainer.save(work / "model"), None, CLASSES)
    scored = {"drifted": frames("drifted_test", args.held_out, True, size),
              "original": frames("original_test", args.held_out, False, size), "trained_drifted": pool[:200]}
    return {"learner": args.learner, "parts": args.parts if args.learner in ("parts", "whole") else None,
            "cell_weight": cell, "r": args.r if args.learner in ("lora", "whole") else None,
            "vision": args.vision if args.learner == "lora" else None, "labels": args.labels, "replay": args.labels,
            "steps": args.steps, "lr": args.lr, "sigma": args.sigma, "trainable_parameters": trainable,
            "train_seconds": round(seconds, 1), "final_losses": {k: round(v, 4) for k, v in result.final.items()},
            "map50": {name: map50_of(detector, group, CLASSES, 16) for name, group in scored.items()},
            "machine": platform.node(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        row = run(args, Path(work))
    kept = json.loads(args.out.read_text()) if args.out.is_file() else {"bench": "drift_learners", "runs": []}
    kept["runs"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(kept, indent=1) + "\n")
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
