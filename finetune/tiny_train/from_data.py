"""The tiny recipe on a user's data set (`edge-inspect model train`): a tiny Florence-2 built for the set's classes,
trained from scratch with the recipe of docs/tiny-model-recipe.md, then measured (COCO mAP50 through the production
detector) on held-out images.

The model's tokenizer is byte-level BPE trained on the set's class names, so any name (`rolled-in_scale`,
`Fehler ä`) is spelled, and the common ones in few tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.data.dataset import Dataset, no_progress
from finetune.data.dataset import Progress as DataProgress
from finetune.tiny import TinySpec, build_tiny_model
from finetune.tiny_train.dataset_frames import dataset_frames
from finetune.tiny_train.trainer import Progress, TinyTrainConfig, TrainResult, train_tiny

# Both input sizes give the recipe's 16 x 16 image-token grid (docs/tiny-model-recipe.md, part 5).
PATCH_STRIDES: dict[int, tuple[int, ...]] = {128: (4, 2, 1), 256: (4, 2, 2)}
METRICS_FILE = "train_metrics.json"
EVAL_DIR = "eval"
DECODER_POSITIONS = TinySpec().max_positions


@dataclass(frozen=True)
class DataRecipe:
    """What `model train` varies; the rest is the demo model's recipe (aligned init, flips, wide-to-sharp sigma)."""

    image_size: int = 128
    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-3
    seed: int = 0
    flip: bool = True
    loc_sigma: float = 4.0
    loc_sigma_final: float | None = 1.5
    threads: int | None = None

    def spec(self) -> TinySpec:
        if self.image_size not in PATCH_STRIDES:
            raise ValueError(f"image_size={self.image_size}: must be one of {sorted(PATCH_STRIDES)}")
        return TinySpec(image_size=self.image_size, patch_strides=PATCH_STRIDES[self.image_size], seed=self.seed)

    def train_config(self) -> TinyTrainConfig:
        return TinyTrainConfig(steps=self.steps, batch_size=self.batch_size, seed=self.seed, lr=self.lr,
                               flip=self.flip, loc_sigma=self.loc_sigma, loc_sigma_final=self.loc_sigma_final,
                               aligned_init=True, threads=self.threads)


def check_sets(train_set: Dataset, val_set: Dataset) -> None:
    """Both sets hold images, and every held-out class is one the model is built (and trained) for."""
    if not train_set.samples:
        raise ValueError("the training set has no images")
    if not val_set.samples:
        raise ValueError("the held-out set has no images: mAP50 needs some")
    unknown = [name for name in val_set.class_names if name not in train_set.class_names]
    if unknown:
        raise ValueError(f"held-out class(es) {unknown} are not in the training set's classes "
                         f"{list(train_set.class_names)}: the model would be built without them")


def answer_tokens(model_dir: Path, sets: list[Dataset]) -> int:
    """Generation budget for the busiest frame: (longest label in tokens + 4 `<loc>`) per box, plus `</s>`.

    At least 64 (the detector's default); a budget past the tiny decoder's positions is an error naming the frame."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    longest = max(len(tokenizer(n, add_special_tokens=False).input_ids) for n in sets[0].class_names)
    busiest = max((s for d in sets for s in d.samples), key=lambda s: len(s.detections))
    need = len(busiest.detections) * (longest + 4) + 1
    if need >= DECODER_POSITIONS:
        raise ValueError(f"{busiest.image} has {len(busiest.detections)} boxes: its answer needs ~{need} tokens, "
                         f"more than the tiny decoder's {DECODER_POSITIONS} positions")
    return max(64, need)


def train_on_dataset(train_set: Dataset, val_set: Dataset, out: Path, recipe: DataRecipe = DataRecipe(),
                     progress: Progress | None = None, eval_progress: DataProgress = no_progress,
                     about: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build, train and save a tiny model for `train_set` into `out`, measure it on `val_set` (report in
    `out/eval/`) and write `out/train_metrics.json` (returned; `about` describes the data for it)."""
    check_sets(train_set, val_set)
    out = Path(out)
    spec = recipe.spec()
    build_tiny_model(train_set.class_names, out, spec)
    budget = answer_tokens(out, [train_set, val_set])
    frames = dataset_frames(train_set, train_set.class_names, (spec.image_size, spec.image_size))
    result = train_tiny(out, frames, recipe.train_config(), progress)
    held_out = evaluate_held_out(out, val_set, budget, eval_progress)
    summary = summarise(out, train_set, val_set, result, held_out, budget, about or {})
    (out / METRICS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def evaluate_held_out(model_dir: Path, val_set: Dataset, max_new_tokens: int, progress: DataProgress
                      ) -> dict[str, Any]:
    """COCO mAP / mAP50 of the saved model through `Florence2Detector` (grammar-constrained, real box scores)."""
    from agent.detector.florence2 import DetectorOptions, Florence2Detector
    from finetune.evaluate import EvalOptions, evaluate

    detector = Florence2Detector(model_dir, options=DetectorOptions(max_new_tokens=max_new_tokens))
    report = evaluate(detector, val_set, model_dir / EVAL_DIR, None, EvalOptions(batch_size=16), progress)
    return report.to_json()


def summarise(out: Path, train_set: Dataset, val_set: Dataset, result: TrainResult, held_out: dict[str, Any],
              budget: int, about: dict[str, Any]) -> dict[str, Any]:
    """What train_metrics.json holds: data, training (time per step, losses) and the held-out numbers."""
    per_step = result.seconds / max(1, result.steps)
    return {
        "model": str(out), "classes": list(train_set.class_names), **about,
        "train_images": len(train_set), "train_boxes": train_set.box_count,
        "held_out_images": len(val_set), "held_out_boxes": val_set.box_count,
        "steps": result.steps, "seconds": round(result.seconds, 1), "seconds_per_step": round(per_step, 3),
        "final_loss": {k: round(v, 4) for k, v in result.final.items()}, "history": result.history,
        "config": result.config, "max_new_tokens": budget,
        "held_out": {"map50": held_out["map50"], "map": held_out["map"], "per_class_ap50": held_out["per_class_ap50"],
                     "detections": held_out["detections"], "report": f"{EVAL_DIR}/metrics.json"},
    }

