"""The `sparkplug` config section: an optional Sparkplug B edge node beside the JSON results (docs/integration.md,
"Sparkplug B"). Off by default; on, it publishes every stored result as DDATA of the camera's device."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.config.sections import MqttConfig, topic_level


class SparkplugConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = Field(default=False, description="Publish results as a Sparkplug B edge node (one device per "
                          "camera) for Ignition or any Sparkplug host")
    group_id: str = Field(default="edge-inspect", description="Sparkplug group id: the first topic level after "
                          "spBv1.0/")
    edge_node_id: str | None = Field(default=None, description="Sparkplug edge node id (null: device_id); the cameras "
                                     "are its devices, named as in cameras")
    mqtt: MqttConfig | None = Field(default=None, description="The Sparkplug broker, in the form of the mqtt section "
                                    "(its prefix, inflight and session_expiry_s are unused); null: the daemon's mqtt "
                                    "broker, credentials and TLS")
    client_id: str | None = Field(default=None, description="MQTT client id of the edge node (null: the result "
                                  "publisher's client id + '-sparkplug'); on the same broker it must differ from "
                                  "the publisher's")
    allow_commands: bool = Field(default=False, description="Accept DCMD writes beyond Node Control/Rebirth (a "
                                 "camera's Command/Trigger). Sparkplug commands are not signed: anyone who may "
                                 "publish on spBv1.0/{group_id}/DCMD/... can trigger, so restrict that with broker "
                                 "ACLs before turning this on")

    @field_validator("group_id", "edge_node_id")
    @classmethod
    def _topic_safe(cls, value: str | None) -> str | None:
        return None if value is None else topic_level(value, "sparkplug id")

    def broker(self, daemon_mqtt: MqttConfig) -> MqttConfig:
        """The broker the edge node connects to."""
        return self.mqtt or daemon_mqtt
