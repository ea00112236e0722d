"""Daemon configuration: one YAML file, overridden by `EDGE_INSPECT_*` env vars, secrets from systemd credentials.

Precedence (highest first): environment (`EDGE_INSPECT_MQTT__PORT=1884`, nested with `__`; lists as JSON),
credential files in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), the YAML file, the defaults of the sections.
Relative paths are relative to the daemon's working directory (systemd `WorkingDirectory=`).
Every model forbids unknown keys so a typo is an error, never a silently ignored setting.

This package is the config's public face: `sections` (one model per YAML section), `sources` (YAML file and
credential files), `settings` (the root and `load_settings`), `errors` (what a user reads when a config is refused),
`reference` (docs/config.md), `rules` (per-class size rules), `recalibration` (the recalibration run's section),
`opcua` and `sparkplug` (the optional line integrations).
"""

from __future__ import annotations

from agent.config.errors import SECRET_KEYS, SECRET_MASK, ConfigError, dotted_path, format_validation_errors
from agent.config.recalibration import RecalibrationConfig
from agent.config.rules import SizeRuleConfig
from agent.config.sections import (
    BatchConfig,
    CameraConfig,
    CommandsConfig,
    GiB,
    MetricsConfig,
    MiB,
    ModelConfig,
    MqttConfig,
    OutboxConfig,
    PicturesConfig,
    QueueConfig,
    TlsConfig,
    topic_level,
)
from agent.config.settings import Settings, dump_settings, load_settings
from agent.config.sources import CREDENTIAL_FILES, ENV_PREFIX

__all__ = [
    "CREDENTIAL_FILES", "ENV_PREFIX", "SECRET_KEYS", "SECRET_MASK", "BatchConfig", "CameraConfig", "CommandsConfig",
    "ConfigError", "GiB", "MetricsConfig", "MiB", "ModelConfig", "MqttConfig", "OutboxConfig", "PicturesConfig",
    "QueueConfig", "RecalibrationConfig", "Settings", "SizeRuleConfig", "TlsConfig", "dotted_path", "dump_settings",
    "format_validation_errors", "load_settings", "topic_level",
]
