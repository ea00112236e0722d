"""The demo model: everything `edge-inspect model demo` does, in one place (see docs/tiny-model-recipe.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.tiny_train.evaluation import EvalResult, evaluate_frames
from finetune.tiny_train.trainer import Progress, TinyTrainConfig, TrainResult, train_tiny


@dataclass(frozen=True)
class DemoRecipe:
    """Everything `edge-inspect model demo` does, in one place (measurements in docs/tiny-model-recipe.md)."""

    classes: tuple[str, ...] = ("scratch", "hole", "stain")
    image_size: int = 128
    patch_strides: tuple[int, ...] = (4, 2, 1)  # 16 x 16 token grid
    train_frames: int = 4000
    eval_frames: int = 50
    max_defects: int = 2
    defect_free_fraction: float = 0.2
    eval_seed_offset: int = 1_000_003  # unseen frames come from another generator seed
    lr: float = 2e-3
    batch_size: int = 16
    aligned_init: bool = True
    loc_sigma: float = 4.0
    loc_sigma_final: float = 1.5  # sharpen the <loc> targets as training goes (wide early, narrow late)

    def generator(self, seed: int) -> Any:
        from agent.capture.synthetic import SyntheticGenerator

        return SyntheticGenerator(seed=seed, size=self.image_size, classes=self.classes,
                                  max_defects=self.max_defects, defect_free_fraction=self.defect_free_fraction)


def build_demo_model(out_dir: Path, steps: int = 500, seed: int = 0, recipe: DemoRecipe | None = None,
                     progress: Progress | None = None) -> tuple[TrainResult, EvalResult]:
    """Build a tiny model, train it on synthetic frames, save it to `out_dir` and measure it on unseen frames."""
    from finetune.tiny import TinySpec, build_tiny_model

    recipe = recipe or DemoRecipe()
    spec = TinySpec(image_size=recipe.image_size, patch_strides=recipe.patch_strides, seed=seed)
    build_tiny_model(recipe.classes, Path(out_dir), spec)
    frames = recipe.generator(seed).frames(recipe.train_frames)
    config = TinyTrainConfig(steps=steps, batch_size=recipe.batch_size, seed=seed, lr=recipe.lr,
                             aligned_init=recipe.aligned_init, loc_sigma=recipe.loc_sigma,
                             loc_sigma_final=recipe.loc_sigma_final)
    result = train_tiny(Path(out_dir), frames, config, progress)
    unseen = recipe.generator(seed + recipe.eval_seed_offset).frames(recipe.eval_frames)
    return result, evaluate_frames(Path(out_dir), unseen)
