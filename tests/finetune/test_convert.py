"""`model convert --model`: a remote-code checkpoint (made from our own model by the inverse mapping) -> native; the
converted model decodes exactly what the original does, and what cannot be converted is refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from agent.cli import app
from agent.detector.florence2 import DetectorOptions, Florence2Detector
from finetune.convert import ConvertError, convert_checkpoint
from finetune.published import TEXT_VOCAB
from tests.finetune.remote_helpers import small_native_model, write_remote_checkpoint

OPTIONS = DetectorOptions(max_new_tokens=30)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("convert")
    native = small_native_model(root / "native")
    old = write_remote_checkpoint(native, root / "old")
    return {"native": native, "old": old, "converted": convert_checkpoint(old, root / "converted")}


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(n)]


def test_the_converted_model_decodes_what_the_original_does(dirs: dict[str, Path]) -> None:
    original, converted = (Florence2Detector(dirs[k], options=OPTIONS) for k in ("native", "converted"))
    pixels = original.preprocess(frames(2))
    (a_tokens, a_scores), (b_tokens, b_scores) = original.generate(pixels), converted.generate(pixels)
    assert torch.equal(a_tokens, b_tokens)
    torch.testing.assert_close(a_scores, b_scores, rtol=0, atol=1e-5, equal_nan=True)


def test_weights_are_the_old_ones_and_the_vocabulary_is_padded_like_the_published(dirs: dict[str, Path]) -> None:
    old = load_file(str(dirs["old"] / "model.safetensors"))
    new = load_file(str(dirs["converted"] / "model.safetensors"))
    assert torch.equal(new["model.multi_modal_projector.image_projection.weight"], old["image_projection"].t())
    assert new["model.language_model.shared.weight"].shape[0] == 51328
    shared = new["model.language_model.shared.weight"]
    assert torch.equal(shared[:TEXT_VOCAB], old["language_model.model.shared.weight"])
    config = json.loads((dirs["converted"] / "config.json").read_text())
    assert config["image_token_id"] == TEXT_VOCAB and "auto_map" not in config
    assert config["vision_config"]["embed_dim"] == [32, 64, 128]


def test_the_tokenizer_gets_the_florence_tokens_and_image_at_the_published_ids(dirs: dict[str, Path]) -> None:
    tokenizer = Florence2Detector(dirs["converted"], options=OPTIONS).processor.tokenizer
    ids = tokenizer.convert_tokens_to_ids(["<od>", "<loc_0>", "<loc_999>", "<and>", "<image>"])
    assert ids == [50265, 50269, 51268, 51288, 51289] and len(tokenizer) == 51290


def test_generation_settings_are_kept_and_classes_carried(dirs: dict[str, Path]) -> None:
    generation = json.loads((dirs["converted"] / "generation_config.json").read_text())
    assert generation["num_beams"] == 3 and generation["no_repeat_ngram_size"] == 3
    assert (dirs["converted"] / "classes.txt").read_text() == (dirs["native"] / "classes.txt").read_text()


def copy_old(dirs: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(dirs["old"], tmp_path / "old"))


def rewrite_weights(path: Path, change: dict[str, torch.Tensor]) -> None:
    weights = load_file(str(path / "model.safetensors"))
    weights.update(change)
    save_file(weights, str(path / "model.safetensors"))


def test_pickle_weights_are_refused_with_the_way_to_safetensors(dirs: dict[str, Path], tmp_path: Path) -> None:
    old = copy_old(dirs, tmp_path)
    (old / "model.safetensors").unlink()
    (old / "pytorch_model.bin").write_bytes(b"not even a pickle: it must never be opened")
    with pytest.raises(ConvertError, match=r"pickle weights only \(pytorch_model.bin\).*save_file"):
        convert_checkpoint(old, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_nonzero_final_logits_bias_is_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    old = copy_old(dirs, tmp_path)
    rewrite_weights(old, {"language_model.final_logits_bias": torch.ones(1, TEXT_VOCAB)})
    with pytest.raises(ConvertError, match="final_logits_bias is not all zeros"):
        convert_checkpoint(old, tmp_path / "out")


def test_an_unknown_weight_name_is_named(dirs: dict[str, Path], tmp_path: Path) -> None:
    old = copy_old(dirs, tmp_path)
    rewrite_weights(old, {"vision_tower.head.weight": torch.zeros(2, 2)})
    with pytest.raises(ConvertError, match=r"no rule for vision_tower\.head\.weight"):
        convert_checkpoint(old, tmp_path / "out")


def test_a_missing_weight_is_named(dirs: dict[str, Path], tmp_path: Path) -> None:
    old = copy_old(dirs, tmp_path)
    weights = load_file(str(old / "model.safetensors"))
    del weights["image_proj_norm.bias"]
    save_file(weights, str(old / "model.safetensors"))
    with pytest.raises(ConvertError, match=r"lacks model\.multi_modal_projector\.image_proj_norm\.bias"):
        convert_checkpoint(old, tmp_path / "out")


def test_a_native_checkpoint_needs_no_conversion(dirs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="needs no conversion"):
        convert_checkpoint(dirs["native"], tmp_path / "out")


def test_a_non_empty_output_directory_is_refused(dirs: dict[str, Path]) -> None:
    with pytest.raises(ConvertError, match="not an empty directory"):
        convert_checkpoint(dirs["old"], dirs["native"])


def test_the_detector_points_an_old_checkpoint_to_the_convert_command(dirs: dict[str, Path]) -> None:
    from agent.detector.base import DetectorError

    with pytest.raises(DetectorError, match="edge-inspect model convert"):
        Florence2Detector(dirs["old"], options=OPTIONS)


def test_the_cli_converts_and_reports_refusals(dirs: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["model", "convert", "--model", str(dirs["old"]), "--out", str(tmp_path / "n")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "n" / "model.safetensors").is_file()
    bad = runner.invoke(app, ["model", "convert", "--model", str(dirs["native"]), "--out", str(tmp_path / "m")])
    assert bad.exit_code == 2 and "needs no conversion" in bad.output
    neither = runner.invoke(app, ["model", "convert", "--out", str(tmp_path / "k")])
    assert neither.exit_code == 2 and "either --model" in neither.output
