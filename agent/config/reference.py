"""The config reference (docs/config.md), generated from the pydantic models so it cannot drift from the code."""

from __future__ import annotations

import json
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agent.config.settings import Settings

HEADER = """# Configuration reference

Generated from `agent/config/` by `edge-inspect check-config --reference` (a test keeps this file current).
Set values in the YAML file, or with environment variables `EDGE_INSPECT_<SECTION>__<KEY>` (e.g.
`EDGE_INSPECT_MQTT__PORT=1884`), which win over the file. Secrets can also come from files in
`$CREDENTIALS_DIRECTORY`. Unknown keys are errors.
"""


def _section_model(info: FieldInfo) -> type[BaseModel] | None:
    """The sub-model of a section field (`mqtt: MqttConfig`, `cameras: list[CameraConfig]`), if any."""
    annotation = info.annotation
    candidates = [annotation, *get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return f"{len(value)} default entr{'y' if len(value) == 1 else 'ies'}"
    return f"`{json.dumps(value, default=str)}`"


def _type_text(info: FieldInfo) -> str:
    text = str(info.annotation).replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")
    if get_origin(info.annotation) is None and isinstance(info.annotation, type):
        text = info.annotation.__name__
    return f"`{text.replace('|', '∣')}`"


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        if _section_model(info) is not None:
            continue
        desc = (info.description or "").replace("|", "/")
        rows.append(f"| `{prefix}{name}` | {_type_text(info)} | {_default_text(info)} | {desc} |")
    return rows


def config_reference_markdown() -> str:
    lines = [HEADER, "## Top level", "", *_table(Settings, "")]
    for name, info in Settings.model_fields.items():
        sub = _section_model(info)
        if sub is None:
            continue
        is_list = get_origin(info.annotation) is list
        lines += ["", f"## `{name}`{' (a list)' if is_list else ''}", "", info.description or "", ""]
        prefix = f"{name}[]." if is_list else f"{name}."
        lines += _table(sub, prefix)
        lines += _subsections(sub, prefix)
    return "\n".join(lines) + "\n"


def _subsections(model: type[BaseModel], prefix: str) -> list[str]:
    """A `###` table for every sub-model of `model`, and theirs in turn (`cameras[].genicam.line_scan`); a mapping of
    sub-models (`model.size_rules`) is one entry per key, `<key>` in the path, with the mapping's description."""
    lines: list[str] = []
    for name, info in model.model_fields.items():
        nested = _section_model(info)
        if nested is None:
            continue
        if get_origin(info.annotation) is dict:
            path, description = f"{prefix}{name}.<key>", (info.description or "").replace("|", "/")
            lines += ["", f"### `{path}`", "", description, "", *_table(nested, f"{path}.")]
        else:
            path = f"{prefix}{name}"
            lines += ["", f"### `{path}`", "", *_table(nested, f"{path}.")]
        lines += _subsections(nested, f"{path}.")
    return lines
