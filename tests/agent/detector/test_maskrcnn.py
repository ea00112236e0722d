"""The `maskrcnn` family: config.json names it, the model builds offline (v1 and v2 heads), weights load only from
safetensors that fit, and the torch-eager detector returns boxes with masks on the frame's own pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.detector.base import DetectorError
from agent.detector.factory import create_detector
from agent.detector.families import families, family_of
from agent.detector.maskrcnn.config import MODEL_TYPE, MaskRcnnConfig, read_config
from tests.fixtures.maskrcnn import require_torchvision


def test_the_family_is_registered_with_its_backends() -> None:
    assert families()["maskrcnn"].model_types == (MODEL_TYPE,)
    assert set(families()["maskrcnn"].backends) == {"torch-eager", "onnx"}


def test_config_json_names_the_family_and_a_bad_value_is_named(tmp_path: Path) -> None:
    MaskRcnnConfig(num_classes=2).write(tmp_path)
    assert family_of(tmp_path) == "maskrcnn"
    assert read_config(tmp_path).heads == "v2"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": MODEL_TYPE, "num_classes": 2, "heads": "v3"}))
    with pytest.raises(DetectorError, match=r"config\.json: not a Mask R-CNN configuration: heads: .*'v3'"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": MODEL_TYPE, "num_classes": 2, "depth": 3}))
    with pytest.raises(DetectorError, match="depth: Extra inputs are not permitted"):
        read_config(tmp_path)


def test_torch_fast_is_not_a_backend_of_this_family(tmp_path: Path) -> None:
    MaskRcnnConfig(num_classes=2).write(tmp_path)
    with pytest.raises(DetectorError, match="unknown detector backend 'torch-fast' for the maskrcnn family; "
                                            "available: torch-eager, onnx"):
        create_detector("torch-fast", tmp_path)


@pytest.mark.parametrize("heads", ["v1", "v2"])
def test_both_head_versions_have_torchvisions_state_dict_keys(heads: str) -> None:
    require_torchvision()
    import torchvision

    from agent.detector.maskrcnn.model import build_model

    ours = build_model(MaskRcnnConfig(num_classes=90, heads=heads, backbone_norm="batch")).state_dict()
    builder = {"v1": torchvision.models.detection.maskrcnn_resnet50_fpn,
               "v2": torchvision.models.detection.maskrcnn_resnet50_fpn_v2}[heads]
    reference = builder(weights=None, weights_backbone=None, num_classes=91).state_dict()
    assert set(ours) == set(reference)
    assert all(ours[k].shape == reference[k].shape for k in ours)


def test_the_tiny_model_detects_with_masks_on_the_frames_pixels(tiny_maskrcnn: Path) -> None:
    detector = create_detector("torch-eager", tiny_maskrcnn, device="cpu")
    frames = [np.full((96, 160, 3), 120, np.uint8), np.zeros((128, 128, 3), np.uint8)]
    results = detector.detect(frames)
    assert [r.image_size for r in results] == [(160, 96), (128, 128)]
    for dets in results:
        assert dets.mask is not None and dets.mask.shape == (len(dets), dets.image_size[1], dets.image_size[0])
        assert dets.class_names == ("scratch", "hole", "stain")
    assert detector.version == "tiny"


def test_class_names_must_match_the_network(tiny_maskrcnn: Path) -> None:
    with pytest.raises(DetectorError, match=r"2 class names \['a', 'b'\] for a Mask R-CNN of 3 classes"):
        create_detector("torch-eager", tiny_maskrcnn, class_names=["a", "b"], device="cpu")


def test_an_adapter_is_refused(tiny_maskrcnn: Path) -> None:
    with pytest.raises(DetectorError, match="the maskrcnn family has no adapters"):
        create_detector("torch-eager", tiny_maskrcnn, adapter="some/adapter", device="cpu")


def test_user_weights_load_only_when_they_fit(tiny_maskrcnn: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from finetune.maskrcnn.tiny import model_from_weights, tiny_config

    weights = tiny_maskrcnn / "model.safetensors"
    copy = model_from_weights(tiny_config(3, 128), ["a", "b", "c"], weights, tmp_path / "copy")
    assert load_file(str(copy / "model.safetensors")).keys() == load_file(str(weights)).keys()
    state = load_file(str(weights))
    state["roi_heads.box_predictor.cls_score.weight"] = state["roi_heads.box_predictor.cls_score.weight"][:2]
    save_file(state, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match=r"wrong.safetensors does not fit .*cls_score.weight \(2, 128\) \(model: "
                                         r"\(4, 128\)\)"):
        model_from_weights(tiny_config(3, 128), ["a", "b", "c"], tmp_path / "wrong.safetensors", tmp_path / "x")
