"""The settings root: top-level keys, the sections, and `load_settings`, which validates a whole config at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.config.errors import ConfigError, format_validation_errors
from agent.config.opcua import OpcUaConfig
from agent.config.recalibration import RecalibrationConfig
from agent.config.sections import (
    BatchConfig,
    CameraConfig,
    CommandsConfig,
    MetricsConfig,
    ModelConfig,
    MqttConfig,
    OutboxConfig,
    PicturesConfig,
    QueueConfig,
    topic_level,
)
from agent.config.sources import ENV_PREFIX, CredentialsSource, YamlSource, yaml_document
from agent.config.sparkplug import SparkplugConfig
from agent.station.config import StationConfig
from agent.unique_names import require_unique


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    device_id: str = Field(default="edge-inspect", description="This box's id, an MQTT topic level")
    state_dir: Path = Field(default=Path("./state"), description="Outbox, learning queue and other state live here")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Detector model")
    cameras: list[CameraConfig] = Field(default_factory=lambda: [CameraConfig()], description="Cameras")
    batch: BatchConfig = Field(default_factory=BatchConfig, description="Batching across cameras")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker connection")
    outbox: OutboxConfig = Field(default_factory=OutboxConfig, description="Durable result outbox")
    queue: QueueConfig = Field(default_factory=QueueConfig, description="Low-confidence learning queue")
    pictures: PicturesConfig = Field(default_factory=PicturesConfig, description="Annotated pictures of fail/uncertain "
                                     "frames behind results' image_url (served by the station)")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus metrics endpoint")
    commands: CommandsConfig = Field(default_factory=CommandsConfig, description="MQTT command handling")
    recalibration: RecalibrationConfig = Field(
        default_factory=RecalibrationConfig, description="Recalibration runs (edge-inspect recalibrate)"
    )
    station: StationConfig = Field(
        default_factory=StationConfig, description="The technician's station: live view, review, recalibration (HTTP)"
    )
    opcua: OpcUaConfig = Field(default_factory=OpcUaConfig, description="OPC UA server for PLCs and SCADA "
                               "(OPC 40100 Machine Vision, reduced; docs/opcua.md)")
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig, description="Sparkplug B edge node for "
                                       "Ignition and other Sparkplug hosts (docs/integration.md, Sparkplug B)")

    @field_validator("device_id")
    @classmethod
    def _topic_safe_device(cls, device_id: str) -> str:
        return topic_level(device_id, "device_id")

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        require_unique([c.name for c in cameras], "camera names")
        return cameras

    @property
    def client_id(self) -> str:
        """The MQTT client id; stable across restarts so the broker resumes our session."""
        return self.mqtt.client_id or f"edge-inspect-{self.device_id}"

    @model_validator(mode="after")
    def _sparkplug_own_client(self) -> Settings:
        broker = self.sparkplug.broker(self.mqtt)
        same_broker = (broker.host, broker.port) == (self.mqtt.host, self.mqtt.port)
        if self.sparkplug.enabled and same_broker and self.sparkplug_client_id == self.client_id:
            raise ValueError(f"sparkplug.client_id {self.client_id!r} is the result publisher's client id; the broker "
                             "would disconnect one for the other")
        return self

    @property
    def sparkplug_client_id(self) -> str:
        """The Sparkplug edge node's MQTT client id, beside the result publisher's."""
        return self.sparkplug.client_id or f"{self.client_id}-sparkplug"

    @property
    def base_topic(self) -> str:
        return f"{self.mqtt.prefix}/{self.device_id}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, CredentialsSource(settings_cls), YamlSource(settings_cls)


def load_settings(path: Path | None = None) -> Settings:
    """Load and validate the config; raises ConfigError listing every problem with its dotted path."""
    source = str(path) if path is not None else "<defaults+env>"
    with yaml_document(path):
        try:
            return Settings()
        except ValidationError as exc:
            raise ConfigError(source, format_validation_errors(exc)) from None


def dump_settings(settings: Settings) -> dict[str, Any]:
    """The resolved config as plain data, secrets masked (SecretStr dumps as '**********')."""
    return settings.model_dump(mode="json")
