"""Where settings come from besides the environment: the YAML file and systemd credential files.

Precedence (highest first) is set in `Settings.settings_customise_sources`: environment, credential files in
`$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), the YAML file, the defaults of the sections.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import PydanticBaseSettingsSource

from agent.config.errors import ConfigError

ENV_PREFIX = "EDGE_INSPECT_"
# systemd credential file name -> dotted settings path it fills
CREDENTIAL_FILES: dict[str, tuple[str, str]] = {
    "mqtt.password": ("mqtt", "password"),
    "commands.hmac_key": ("commands", "hmac_key"),
}

# the YAML document of the load in progress (a source class cannot take arguments from load_settings directly)
_yaml_data: ContextVar[dict[str, Any] | None] = ContextVar("edge_inspect_yaml", default=None)


@contextmanager
def yaml_document(path: Path | None) -> Iterator[None]:
    """Make the YAML file at `path` (none: an empty document) what `YamlSource` reads while the block runs."""
    token = _yaml_data.set(read_yaml(path) if path is not None else {})
    try:
        yield
    finally:
        _yaml_data.reset(token)


class YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_yaml_data.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get() or {})


class CredentialsSource(PydanticBaseSettingsSource):
    """Secrets from systemd `LoadCredential=` files, so they never sit in the YAML or the environment."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        found: dict[str, Any] = {}
        if not directory:
            return found
        for filename, (section, key) in CREDENTIAL_FILES.items():
            file = Path(directory) / filename
            if file.is_file():
                found.setdefault(section, {})[key] = file.read_text(encoding="utf-8").strip()
        return found


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of the YAML file; an unreadable file or a document that is not a mapping is a
    `ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), [f"top level must be a mapping of settings, got {type(data).__name__}"])
    not_text = [key for key in data if not isinstance(key, str)]  # `1:` or a bare `?` (key null) in YAML
    if not_text:
        raise ConfigError(str(path), [f"top level: keys should be setting names (text), got {key!r}"
                                      for key in not_text])
    return data
