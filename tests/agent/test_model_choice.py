"""Which adapter the daemon serves: the config's, else the store's verified `current`, else none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.config import ModelConfig, Settings, SizeRuleConfig
from agent.detections import Detections
from agent.detector.base import DetectorError
from agent.detector.score_calibration import IDENTITY, ClassCalibration, ScoreCalibration
from agent.measure import SizeRule
from agent.model_choice import ModelChoice, choose_model, detector_from_settings, thresholds_for
from agent.store.files import StoreError
from agent.store.model_store import ModelStore
from tests.agent.store.helpers import make_adapter, make_base


def settings(tmp_path: Path, adapter: Path | None = None) -> Settings:
    model = ModelConfig(path=tmp_path / "base", adapter=adapter, thresholds={"hole": 0.7}, default_threshold=0.4)
    return Settings(state_dir=tmp_path / "state", model=model)


def test_without_a_store_the_base_model_serves_alone(tmp_path: Path) -> None:
    assert choose_model(settings(tmp_path)) == ModelChoice(None, {}, "base")


def test_the_store_current_serves_with_its_fitted_thresholds(tmp_path: Path) -> None:
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(make_base(tmp_path / "base"))
    store.promote(store.add_adapter(make_adapter(tmp_path / "a"), thresholds={"hole": 0.2, "scratch": 0.3}))
    choice = choose_model(settings(tmp_path))
    assert choice == ModelChoice(store.path("v0001"), {"hole": 0.2, "scratch": 0.3}, "store:v0001")
    thresholds = thresholds_for(settings(tmp_path), choice)  # the config's own override the fitted ones
    assert thresholds.for_classes(["hole", "scratch", "stain"]) == {"hole": 0.7, "scratch": 0.3, "stain": 0.4}

    (store.path("v0001") / "adapter_model.safetensors").write_bytes(b"rot")
    with pytest.raises(StoreError, match="is corrupt"):
        choose_model(settings(tmp_path))
    assert choose_model(settings(tmp_path, adapter=tmp_path / "x")) == ModelChoice(tmp_path / "x", {}, "config")


def test_the_model_directorys_thresholds_serve_under_the_manifests_and_the_configs(tmp_path: Path) -> None:
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(make_base(tmp_path / "base"))
    (tmp_path / "base" / "thresholds.json").write_text('{"hole": 0.1, "scratch": 0.15, "stain": 0.25}')
    assert choose_model(settings(tmp_path)) == ModelChoice(None, {"hole": 0.1, "scratch": 0.15, "stain": 0.25}, "base")
    store.promote(store.add_adapter(make_adapter(tmp_path / "a"), thresholds={"scratch": 0.3}))
    choice = choose_model(settings(tmp_path))
    assert choice.thresholds == {"hole": 0.1, "scratch": 0.3, "stain": 0.25}
    limits = thresholds_for(settings(tmp_path), choice).for_classes(["hole", "scratch", "stain"])
    assert limits == {"hole": 0.7, "scratch": 0.3, "stain": 0.25}


def test_a_malformed_thresholds_file_refuses_the_model_naming_the_bad_entry(tmp_path: Path) -> None:
    make_base(tmp_path / "base")
    (tmp_path / "base" / "thresholds.json").write_text('{"hole": 1.5}')
    with pytest.raises(DetectorError, match=r"thresholds.json: threshold of 'hole' must be a number in \[0, 1\]"):
        choose_model(settings(tmp_path))


def test_an_onnx_line_serves_the_store_versions_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.config import RecalibrationConfig
    from tests.agent.store.test_exports import make_export

    (tmp_path / "served").mkdir()  # the base's own export, which model.path names on an onnx line
    line = Settings(state_dir=tmp_path / "state", model=ModelConfig(path=tmp_path / "served", backend="onnx"),
                    recalibration=RecalibrationConfig(base_model=tmp_path / "base"))
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(make_base(tmp_path / "base"))
    store.promote(store.add_adapter(make_adapter(tmp_path / "plain")))
    with pytest.raises(StoreError, match="v0001 has no ONNX export"):
        choose_model(line)
    store.promote(store.add_adapter(make_adapter(tmp_path / "a"), onnx_export=make_export(tmp_path / "export")))
    choice = choose_model(line)
    assert choice.export == store.path("v0002") / "onnx" and choice.source == "store:v0002"
    built: list[tuple[object, ...]] = []
    monkeypatch.setattr("agent.model_choice.create_detector", lambda *args, **kw: built.append(args))
    detector_from_settings(line, choice)
    assert built == [("onnx", choice.export, None, ["scratch", "hole", "stain"])]


def test_the_daemon_builds_the_configured_quantization(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "served").mkdir()
    line = Settings(state_dir=tmp_path / "state", model=ModelConfig(path=tmp_path / "served", backend="torch-fast",
                                                                    quantize="int8-weight"))
    built: list[dict[str, object]] = []
    monkeypatch.setattr("agent.model_choice.create_detector", lambda *args, **kw: built.append(kw))
    detector_from_settings(line, choose_model(line))
    assert built[0]["quantize"] == "int8-weight"


# ----- score calibration: it goes with the thresholds that were fitted on it ------------------------------------------
SCRATCH = ClassCalibration(True, slope=2.0, offset=1.0, reason="Platt scaling on 40 boxes")


def test_the_model_directorys_calibration_serves_the_base_model_and_a_config_adapter(tmp_path: Path) -> None:
    base = make_base(tmp_path / "base")
    assert choose_model(settings(tmp_path)).calibration.is_identity  # none written: raw scores
    calibration = ScoreCalibration({"scratch": SCRATCH})
    (base / "calibration.json").write_text(json.dumps(calibration.to_json()))
    assert choose_model(settings(tmp_path)).calibration == calibration
    assert choose_model(settings(tmp_path, adapter=tmp_path / "x")).calibration == calibration


def test_a_store_version_serves_its_own_calibration_and_one_fitted_without_serves_raw_scores(tmp_path: Path) -> None:
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(make_base(tmp_path / "base"))
    (tmp_path / "base" / "calibration.json").write_text(json.dumps(ScoreCalibration({"hole": SCRATCH}).to_json()))
    store.promote(store.add_adapter(make_adapter(tmp_path / "old"), thresholds={"scratch": 0.3}))
    assert choose_model(settings(tmp_path)).calibration == IDENTITY  # its thresholds were fitted on raw scores
    own = ScoreCalibration({"scratch": SCRATCH})
    store.promote(store.add_adapter(make_adapter(tmp_path / "new"), extra={"score_calibration": own.to_json()}))
    assert choose_model(settings(tmp_path)).calibration == own


def test_a_malformed_calibration_refuses_the_model_naming_the_file(tmp_path: Path) -> None:
    base = make_base(tmp_path / "base")
    (base / "calibration.json").write_text('{"format": "edge-inspect.score-calibration/1", "method": "platt", '
                                           '"classes": {"hole": {"fitted": true, "slope": 0, "offset": 1}}}')
    with pytest.raises(DetectorError, match=r"base/calibration.json: class 'hole': slope must be > 0"):
        choose_model(settings(tmp_path))
    (base / "calibration.json").unlink()
    store = ModelStore.in_state_dir(tmp_path / "state")
    store.set_base(base)
    store.promote(store.add_adapter(make_adapter(tmp_path / "a"), extra={"score_calibration": {"format": "x"}}))
    with pytest.raises(StoreError, match=r"v0001/manifest.json \(score_calibration\): expected an object with format"):
        choose_model(settings(tmp_path))


class FixedDetector:
    class_names: tuple[str, ...] = ("scratch", "hole", "stain")
    version = "fixed"

    def detect(self, frames: list[npt.NDArray[np.uint8]]) -> list[Detections]:
        return [Detections.from_labels(["scratch", "hole"], [[0, 0, 9, 9]] * 2, self.class_names, (32, 32),
                                       score=[0.2, 0.2]) for _ in frames]


def test_the_daemons_detector_publishes_the_chosen_calibrations_scores(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.model_choice import detector_from_settings

    monkeypatch.setattr("agent.model_choice.create_detector", lambda *args, **kw: FixedDetector())
    line = settings(tmp_path)
    raw = detector_from_settings(line, ModelChoice(None, {}, "base"))
    assert isinstance(raw, FixedDetector)
    choice = ModelChoice(None, {}, "base", calibration=ScoreCalibration({"scratch": SCRATCH}))
    (dets,) = detector_from_settings(line, choice).detect([np.zeros((32, 32, 3), dtype=np.uint8)])
    assert dets.score.tolist() == pytest.approx([float(SCRATCH(0.2)), 0.2])  # scratch calibrated, hole raw


def test_the_configs_size_rules_travel_with_the_thresholds(tmp_path: Path) -> None:
    model = ModelConfig(path=tmp_path, size_rules={"scratch": SizeRuleConfig(min_length_mm=2.0),
                                                   "stain": SizeRuleConfig(min_area_mm2=0.5)})
    thresholds = thresholds_for(Settings(state_dir=tmp_path / "state", model=model), ModelChoice(None, {}, "base"))
    assert thresholds.size_rules == {"scratch": SizeRule(min_length_mm=2.0), "stain": SizeRule(min_area_mm2=0.5)}

