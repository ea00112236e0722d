"""Config sections: the validators that look at more than one key refuse with the section's path."""

from __future__ import annotations

from pathlib import Path

import pytest

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
