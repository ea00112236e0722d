"""The `sparkplug` section: off by default, ids that are safe topic levels, its own client id, the daemon's broker
unless it names one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.config import MqttConfig, Settings
from agent.config.sparkplug import SparkplugConfig


def test_off_by_default_and_the_daemons_broker_unless_named() -> None:
    settings = Settings(device_id="box-3")
    assert not settings.sparkplug.enabled and not settings.sparkplug.allow_commands
    assert settings.sparkplug.broker(settings.mqtt) is settings.mqtt
    assert settings.sparkplug_client_id == "edge-inspect-box-3-sparkplug"
    own = SparkplugConfig(mqtt=MqttConfig(host="plant-broker", port=8883))
    assert own.broker(settings.mqtt).host == "plant-broker"


@pytest.mark.parametrize("key", ["group_id", "edge_node_id"])
def test_ids_must_be_one_topic_level(key: str) -> None:
    with pytest.raises(ValidationError, match="'line/7' must be 1-64 chars"):
        SparkplugConfig.model_validate({key: "line/7"})


def test_its_client_id_must_not_be_the_result_publishers(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="is the result publisher's client id"):
        Settings(mqtt=MqttConfig(client_id="box"), sparkplug=SparkplugConfig(enabled=True, client_id="box"))
    elsewhere = SparkplugConfig(enabled=True, client_id="box", mqtt=MqttConfig(host="plant-broker"))
    assert Settings(mqtt=MqttConfig(client_id="box"), sparkplug=elsewhere).sparkplug_client_id == "box"
    monkeypatch.setenv("EDGE_INSPECT_SPARKPLUG__ENABLED", "true")
    monkeypatch.setenv("EDGE_INSPECT_SPARKPLUG__GROUP_ID", "line-7")
    settings = Settings()
    assert settings.sparkplug.enabled and settings.sparkplug.group_id == "line-7"
