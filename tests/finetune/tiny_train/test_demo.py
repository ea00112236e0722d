"""The demo recipe end to end, shrunk: build, train, save and measure on unseen frames."""

from __future__ import annotations

from pathlib import Path

from agent.modeldir import read_class_names
from finetune.tiny_train.demo import DemoRecipe, build_demo_model


def test_the_demo_recipe_saves_a_model_and_measures_it_on_unseen_frames(tmp_path: Path) -> None:
    recipe = DemoRecipe(image_size=64, patch_strides=(4, 2, 2), train_frames=4, eval_frames=2, batch_size=2)
    calls: list[int] = []
    result, measured = build_demo_model(tmp_path / "demo", steps=2, recipe=recipe,
                                        progress=lambda step, total, values: calls.append(step))
    assert result.steps == 2 and calls == [1, 2] and set(result.final) == {"loss", "lm", "cell_class", "cell_box"}
    assert measured.frames == 2 and read_class_names(tmp_path / "demo") == recipe.classes
    assert (tmp_path / "demo" / "model.safetensors").is_file()
