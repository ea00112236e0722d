"""`model convert --adapter`: a maestro-style LoRA in the old layout (made from a native one by the inverse mapping)
-> a native adapter that decodes like the original; adapters that do not fit are refused, naming the keys."""

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
from finetune.convert_adapter import convert_adapter
from finetune.published import TEXT_VOCAB
from tests.finetune.remote_helpers import (
    native_lora,
    small_native_model,
    write_old_adapter,
    write_remote_checkpoint,
)

OPTIONS = DetectorOptions(max_new_tokens=30)
HEAD_B = "base_model.model.lm_head.lora_B.weight"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapter")
    native = small_native_model(root / "native")
    old = write_remote_checkpoint(native, root / "old")
    base = convert_checkpoint(old, root / "base")
    lora = native_lora(native, root / "lora")
    old_lora = write_old_adapter(lora, root / "old_lora")
    return {"native": native, "old": old, "base": base, "lora": lora, "old_lora": old_lora,
            "converted": convert_adapter(old_lora, root / "converted", base)}


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(9)
    return [rng.integers(0, 256, (80, 100, 3), dtype=np.uint8) for _ in range(3)]


def test_converted_tensors_are_the_original_ones_with_the_head_padded(dirs: dict[str, Path]) -> None:
    original = load_file(str(dirs["lora"] / "adapter_model.safetensors"))
    converted = load_file(str(dirs["converted"] / "adapter_model.safetensors"))
    lora_keys = {k for k in original if ".lora_" in k}
    assert set(converted) == lora_keys and "base_model.model.lm_head.base_layer.weight" in original  # PEFT's copy

    old_head = load_file(str(dirs["old_lora"] / "adapter_model.safetensors"))["base_model.model.language_model."
                                                                            "lm_head.lora_B.weight"]
    assert old_head.shape[0] == TEXT_VOCAB and converted[HEAD_B].shape[0] == 51328
    for key in lora_keys:
        assert torch.equal(converted[key], original[key]), key


def test_the_converted_adapter_decodes_like_the_original(dirs: dict[str, Path]) -> None:
    original = Florence2Detector(dirs["native"], adapter=dirs["lora"], options=OPTIONS)
    converted = Florence2Detector(dirs["base"], adapter=dirs["converted"], options=OPTIONS)
    plain = Florence2Detector(dirs["base"], options=OPTIONS)
    pixels = original.preprocess(frames())
    tokens, scores = converted.generate(pixels)
    assert torch.equal(tokens, original.generate(pixels)[0])
    assert not torch.allclose(torch.nan_to_num(scores), torch.nan_to_num(plain.generate(pixels)[1]))  # it acts


def test_merging_the_head_lora_leaves_the_input_embeddings_alone(dirs: dict[str, Path]) -> None:
    merged = Florence2Detector(dirs["base"], adapter=dirs["converted"], options=OPTIONS).model
    plain = Florence2Detector(dirs["base"], options=OPTIONS).model
    assert torch.equal(merged.get_input_embeddings().weight, plain.get_input_embeddings().weight)
    assert not torch.equal(merged.get_output_embeddings().weight, plain.get_output_embeddings().weight)


def test_the_config_names_native_modules_and_the_base(dirs: dict[str, Path]) -> None:
    config = json.loads((dirs["converted"] / "adapter_config.json").read_text())
    assert config["task_type"] is None and config["base_model_name_or_path"] == str(dirs["base"])
    assert "lm_head" in config["target_modules"]
    assert "model.language_model.encoder.layers.0.self_attn.q_proj" in config["target_modules"]
    assert "model.vision_tower.blocks.0.0.spatial_block.ffn.fc2" in config["target_modules"]
    assert config["r"] == 4 and config["lora_alpha"] == 8


def broken_copy(dirs: dict[str, Path], tmp_path: Path, change: dict[str, torch.Tensor]) -> Path:
    src = Path(shutil.copytree(dirs["old_lora"], tmp_path / "old_lora"))
    tensors = load_file(str(src / "adapter_model.safetensors"))
    tensors.update(change)
    save_file(tensors, str(src / "adapter_model.safetensors"))
    return src


def test_a_lora_for_a_wider_model_is_refused_naming_the_key(dirs: dict[str, Path], tmp_path: Path) -> None:
    key = "base_model.model.language_model.model.encoder.layers.0.fc2.lora_A.weight"
    src = broken_copy(dirs, tmp_path, {key: torch.zeros(4, 3072)})
    with pytest.raises(ConvertError, match=r"encoder\.layers\.0\.fc2\.lora_A\.weight: shape \(4, 3072\), the base "
                                           r"needs \(4, 256\)"):
        convert_adapter(src, tmp_path / "out", dirs["base"])
    assert not (tmp_path / "out").exists()


def test_a_lora_on_a_module_the_base_lacks_is_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    key = "base_model.model.language_model.model.encoder.layers.7.fc2.lora_A.weight"
    src = broken_copy(dirs, tmp_path, {key: torch.zeros(4, 256)})
    with pytest.raises(ConvertError, match=r"the base has no module model\.language_model\.encoder\.layers\.7\.fc2"):
        convert_adapter(src, tmp_path / "out", dirs["base"])


def test_a_key_outside_the_old_layout_is_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    src = broken_copy(dirs, tmp_path, {"base_model.model.vision_tower.head.lora_A.weight": torch.zeros(4, 4)})
    with pytest.raises(ConvertError, match=r"vision_tower\.head\.lora_A\.weight.*no remote-code Florence-2 module"):
        convert_adapter(src, tmp_path / "out", dirs["base"])


def test_a_native_adapter_and_an_old_base_are_refused_saying_why(dirs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="already in the native layout"):
        convert_adapter(dirs["lora"], tmp_path / "a", dirs["base"])
    with pytest.raises(ConvertError, match="itself in the remote-code layout: convert it first"):
        convert_adapter(dirs["old_lora"], tmp_path / "b", dirs["old"])


def test_a_pickle_adapter_is_refused_with_the_way_to_safetensors(dirs: dict[str, Path], tmp_path: Path) -> None:
    src = Path(shutil.copytree(dirs["old_lora"], tmp_path / "old_lora"))
    (src / "adapter_model.safetensors").unlink()
    (src / "adapter_model.bin").write_bytes(b"never opened")
    with pytest.raises(ConvertError, match=r"pickle weights only \(adapter_model\.bin\)"):
        convert_adapter(src, tmp_path / "out", dirs["base"])


def test_a_changed_copy_of_the_head_is_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    key = "base_model.model.language_model.lm_head.base_layer.weight"
    head = load_file(str(dirs["old_lora"] / "adapter_model.safetensors"))[key]
    src = broken_copy(dirs, tmp_path, {key: head + 0.5})
    with pytest.raises(ConvertError, match=r"lm_head\.base_layer\.weight: the adapter carries changed base weights"):
        convert_adapter(src, tmp_path / "out", dirs["base"])


def test_modules_to_save_are_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    src = Path(shutil.copytree(dirs["old_lora"], tmp_path / "old_lora"))
    config = json.loads((src / "adapter_config.json").read_text())
    (src / "adapter_config.json").write_text(json.dumps({**config, "modules_to_save": ["lm_head"]}))
    with pytest.raises(ConvertError, match="modules_to_save"):
        convert_adapter(src, tmp_path / "out", dirs["base"])


def test_the_cli_converts_an_adapter_against_its_base(dirs: dict[str, Path], tmp_path: Path) -> None:
    args = ["model", "convert", "--adapter", str(dirs["old_lora"]), "--base", str(dirs["base"])]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    no_base = CliRunner().invoke(app, ["model", "convert", "--adapter", str(dirs["old_lora"]), "--out",
                                       str(tmp_path / "b")])
    assert no_base.exit_code == 2 and "--base" in no_base.output
