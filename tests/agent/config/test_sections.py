"""Config sections: the validators that look at more than one key refuse with the section's path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.capture.sources import gstreamer_available
from agent.config import ConfigError, ModelConfig, load_settings, topic_level


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("cameras: [{name: a, source: x}, {name: a, source: y}]\n", "cameras: duplicate camera names ['a']"),
        ("mqtt: {tls: {cert_file: c.pem}}\n", "mqtt.tls: cert_file and key_file must be given together"),
        ("commands: {require_signature: true}\n", "commands: require_signature is true but no hmac_key"),
        ("mqtt: {prefix: 'plant/+/x'}\n", "mqtt.prefix: prefix level"),
        ("model: {path: ./models/absent}\n", "model.path: model directory './models/absent' does not exist"),
        ("model: {size_rules: {dent: {min_length_mm: 2}}}\n",
         "model.size_rules: size rules for unknown classes ['dent']; classes are ['scratch', 'hole', 'stain']"),
        ("model: {size_rules: {scratch: {}}}\n",
         "model.size_rules.scratch: a size rule needs min_length_mm or min_area_mm2 (or both)"),
        ("model: {size_rules: {scratch: {min_length_mm: 0}}}\n", "model.size_rules.scratch.min_length_mm"),
        ("model: {size_rules: {scratch: {min_lenght_mm: 2}}}\n", "model.size_rules.scratch.min_lenght_mm"),
        ("model: {quantize: int8-weight}\n", "model: quantize 'int8-weight' needs backend 'torch-fast'"),
        ("recalibration: {lora_whole: [language_model]}\n", "recalibration.lora_whole.0"),
    ],
)
def test_invalid_files_are_refused_with_a_reason(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match="invalid config") as caught:
        load_settings(write(tmp_path, text))
    assert any(reason in line for line in caught.value.errors), caught.value.errors


def test_a_class_without_its_own_threshold_uses_the_default() -> None:
    model = ModelConfig(classes=["scratch", "hole"], thresholds={"hole": 0.3}, default_threshold=0.6)
    assert (model.threshold("hole"), model.threshold("scratch")) == (0.3, 0.6)


def test_topic_levels_refuse_separators_and_wildcards() -> None:
    assert topic_level("line1-box1", "device_id") == "line1-box1"
    for bad in ("a/b", "a+b", "#", "", "-lead"):
        with pytest.raises(ValueError, match="MQTT topic level"):
            topic_level(bad, "device_id")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("ftp://cam.local/stream", "cameras.1: camera 'bad': source 'ftp://cam.local/stream' cannot work: unsupported"),
        ("synthetic:bogus=1", "camera 'bad': source 'synthetic:bogus=1' cannot work"),
        ("genicam://", "camera 'bad': source 'genicam://' cannot work: 'genicam://': a genicam:// source needs"),
    ],
)
def test_a_source_no_camera_can_serve_is_refused_naming_the_camera_and_the_uri(
        tmp_path: Path, source: str, reason: str) -> None:
    text = f"cameras: [{{name: good, source: 'synthetic:'}}, {{name: bad, source: '{source}'}}]\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert any(reason in line for line in caught.value.errors), caught.value.errors


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer: gst: sources are accepted")
def test_a_gst_source_is_refused_on_an_opencv_without_gstreamer_saying_where_to_get_one(tmp_path: Path) -> None:
    text = "cameras: [{name: gate, source: 'gst:videotestsrc ! appsink'}]\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    (line,) = caught.value.errors
    assert "camera 'gate'" in line and "GStreamer: NO" in line and "docs/cameras.md" in line


def test_genicam_settings_need_a_genicam_source_and_a_convertible_pixel_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "cameras: [{name: a, source: 'synthetic:', genicam: {gain_db: 1}}]\n"))
    assert any("a genicam section needs a genicam:// source" in line for line in caught.value.errors)
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "cameras: [{name: a, source: 'synthetic:', genicam: {pixel_format: YUV}}]\n"))
    assert any("cameras.0.genicam.pixel_format" in line and "'YUV'" in line for line in caught.value.errors)


def test_size_rules_and_a_camera_geometry_path_load_from_yaml(tmp_path: Path) -> None:
    text = ("model: {size_rules: {scratch: {min_length_mm: 2}, stain: {min_area_mm2: 0.5, min_length_mm: 1}}}\n"
            "cameras: [{name: cam0, geometry: /etc/edge-inspect/cam0.json}]\n")
    settings = load_settings(write(tmp_path, text))
    rules = settings.model.size_rules
    assert (rules["scratch"].min_length_mm, rules["scratch"].min_area_mm2) == (2.0, None)
    assert (rules["stain"].min_length_mm, rules["stain"].min_area_mm2) == (1.0, 0.5)
    assert settings.cameras[0].geometry == Path("/etc/edge-inspect/cam0.json")
    assert load_settings(write(tmp_path, "device_id: box\n")).cameras[0].geometry is None



def test_the_size_rules_example_in_docs_cameras_md_is_a_valid_config(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "cameras.md").read_text()
    example = yaml.safe_load(doc.split("### Size rules", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0])
    example["model"]["path"] = str(tmp_path)
    rules = load_settings(write(tmp_path, yaml.safe_dump(example))).model.size_rules
    assert rules["scratch"].min_length_mm == 2 and rules["stain"].min_area_mm2 == 0.5
    assert (rules["hole"].min_length_mm, rules["hole"].min_area_mm2) == (0.3, 0.05)
