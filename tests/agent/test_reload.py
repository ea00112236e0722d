"""What a reload applies live (model, cameras, batch, queue, station, pictures) and what it names as needing a
restart."""

from __future__ import annotations

from pathlib import Path

from agent.config import (
    CameraConfig,
    ModelConfig,
    MqttConfig,
    QueueConfig,
    RecalibrationConfig,
    Settings,
    SizeRuleConfig,
)
from agent.config.opcua import OpcUaConfig
from agent.reload import OPCUA_CAMERAS, camera_changes, changed_keys, plan_reload
from agent.station.config import StationConfig


def running() -> Settings:
    model = ModelConfig(path=Path("m"), thresholds={"hole": 0.5})
    return Settings(device_id="box1", state_dir=Path("state"), model=model)


def test_changed_keys_are_dotted_and_lists_count_as_one_key() -> None:
    before = running()
    after = before.model_copy(update={"mqtt": MqttConfig(port=1884, keepalive=10),
                                      "cameras": [CameraConfig(name="cam9")]})
    assert changed_keys(before, after) == ["cameras", "mqtt.port", "mqtt.keepalive"]
    assert changed_keys(before, running()) == []


def test_the_model_section_changes_live_mqtt_and_the_like_are_named_for_a_restart() -> None:
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
                                       "restart_required": ["log_level", "mqtt.port"],
                                       "cameras": {"added": [], "removed": [], "restarted": []}}


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


def test_cameras_queue_station_and_batch_change_live_without_loading_the_model() -> None:
    before = running().model_copy(update={"cameras": [CameraConfig(name="a"), CameraConfig(name="b")]})
    loaded = before.model_copy(update={
        "cameras": [CameraConfig(name="b", fps=3.0), CameraConfig(name="c")],
        "queue": QueueConfig(per_minute=3), "station": StationConfig(port=8443),
        "batch": before.batch.model_copy(update={"max_frames": 8}), "state_dir": "elsewhere"})
    plan = plan_reload(before, loaded, "config")
    assert plan.applied == ["cameras", "batch.max_frames", "queue.per_minute", "station.port"]
    assert plan.restart_required == ["state_dir"] and not plan.load_model
    assert plan.settings.cameras == loaded.cameras and plan.settings.queue.per_minute == 3
    assert plan.settings.state_dir == before.state_dir
    assert plan.cameras.describe() == {"added": ["c"], "removed": ["a"], "restarted": ["b"]}
    assert plan.touches("station") and plan.touches("queue") and not plan.touches("pictures")


def test_camera_changes_name_added_removed_and_changed_cameras_and_leave_the_rest() -> None:
    a, b, c = CameraConfig(name="a"), CameraConfig(name="b"), CameraConfig(name="c")
    changes = camera_changes([a, b], [a, b.model_copy(update={"mode": "trigger"}), c])
    assert (changes.added, changes.removed, [x.name for x in changes.restarted]) == ((c,), (), ["b"])
    assert not camera_changes([a, b], [b, a])  # a new order alone restarts nothing
    assert camera_changes([a, b], [a]).removed == ("b",)


def test_with_opcua_on_a_camera_change_also_names_the_address_space_for_a_restart() -> None:
    opcua = OpcUaConfig(enabled=True, allow_anonymous=True, security_policies=["None"])
    before = running().model_copy(update={"opcua": opcua})
    loaded = before.model_copy(update={"cameras": [*before.cameras, CameraConfig(name="cam9")]})
    assert plan_reload(before, loaded, "config").restart_required == [OPCUA_CAMERAS]
    same_modes = before.model_copy(update={"cameras": [before.cameras[0].model_copy(update={"fps": 2.0})]})
    assert plan_reload(before, same_modes, "config").restart_required == []
