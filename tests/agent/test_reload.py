"""What a reload applies live (the `model` section) and what it names as needing a restart."""

from __future__ import annotations

from pathlib import Path

from agent.config import CameraConfig, ModelConfig, MqttConfig, RecalibrationConfig, Settings, SizeRuleConfig
from agent.reload import changed_keys, plan_reload


def running() -> Settings:
    model = ModelConfig(path=Path("m"), thresholds={"hole": 0.5})
    return Settings(device_id="box1", state_dir=Path("state"), model=model)


def test_changed_keys_are_dotted_and_lists_count_as_one_key() -> None:
    before = running()
    after = before.model_copy(update={"mqtt": MqttConfig(port=1884, keepalive=10),
                                      "cameras": [CameraConfig(name="cam9")]})
    assert changed_keys(before, after) == ["cameras", "mqtt.port", "mqtt.keepalive"]
    assert changed_keys(before, running()) == []


def test_only_the_model_section_changes_the_rest_is_named_for_a_restart() -> None:
    before = running()
    loaded = before.model_copy(update={
        "model": before.model.model_copy(update={"thresholds": {"hole": 0.3}, "adapter": Path("lora")}),
        "mqtt": MqttConfig(port=1884), "log_level": "debug",
        "recalibration": RecalibrationConfig(epochs=9)})  # read by `edge-inspect recalibrate`, not the daemon
    plan = plan_reload(before, loaded, "all")
    assert plan.applied == ["model.adapter", "model.thresholds"]
    assert plan.restart_required == ["log_level", "mqtt.port"]
    assert plan.settings.model == loaded.model and plan.settings.mqtt == before.mqtt
    assert plan.settings.log_level == "info" and plan.settings.recalibration == before.recalibration
    assert plan.load_model
    assert plan.summary("m+v0002") == {"model": "m+v0002", "scope": "all", "applied": plan.applied,
                                       "restart_required": ["log_level", "mqtt.port"]}


def test_scope_decides_what_is_read_and_whether_the_model_is_loaded() -> None:
    before = running()
    thresholds_only = before.model_copy(update={
        "model": before.model.model_copy(update={"default_threshold": 0.7, "uncertain_band": 0.1})})
    assert not plan_reload(before, thresholds_only, "config").load_model  # a decision change needs no model load
    size_rules = before.model_copy(update={"model": before.model.model_copy(update={
        "classes": ["hole"], "size_rules": {"hole": SizeRuleConfig(min_area_mm2=0.5)}})})
    assert plan_reload(before, size_rules, "config").applied == ["model.classes", "model.size_rules"]
    rules_only = size_rules.model_copy(update={"model": size_rules.model.model_copy(update={
        "size_rules": {"hole": SizeRuleConfig(min_area_mm2=0.8)}})})
    assert plan_reload(size_rules, rules_only, "config").applied == ["model.size_rules"]
    assert not plan_reload(size_rules, rules_only, "config").load_model  # size rules decide: no model load
    assert plan_reload(before, thresholds_only, "all").load_model
    new_base = before.model_copy(update={"model": before.model.model_copy(update={"path": Path("other")})})
    assert plan_reload(before, new_base, "config").load_model
    store_only = plan_reload(before, None, "model")  # the config file was not read
    assert store_only.load_model and store_only.settings is before and store_only.restart_required == []
    assert not plan_reload(before, None, "config").load_model  # no config file to read: nothing to do
