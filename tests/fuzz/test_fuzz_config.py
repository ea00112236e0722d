"""Fuzzing `load_settings` with hypothesis: arbitrary YAML text, and valid configs with one setting mutated.

A config either loads or raises `ConfigError`, never anything else; every error line starts with the dotted path
of the setting at fault, and a mutated setting that is refused is named (itself, or the section that holds it).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, Settings, load_settings

SCALARS = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=8)


def setting_paths(model: Any = Settings, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every settings path, sections included (`("mqtt",)`, `("mqtt", "tls", "ca_file")`, ...)."""
    paths = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        paths.append(path)
        annotation = info.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            paths.extend(setting_paths(annotation, path))
    return paths


PATHS = setting_paths()


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the fuzzed document counts: no EDGE_INSPECT_* variables, no credentials directory."""
    import os

    for name in [n for n in os.environ if n.startswith("EDGE_INSPECT_") or n == "CREDENTIALS_DIRECTORY"]:
        monkeypatch.delenv(name)


def load_text(text: str) -> Settings:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text, encoding="utf-8")
        return load_settings(path)


DOCUMENT_LEVEL = ("top level", "not valid YAML", "cannot read file")


def assert_well_formed(error: ConfigError) -> None:
    """Each line is `path: reason`, except one line about the document as a whole (not YAML, not a mapping)."""
    assert error.errors, "a ConfigError must list at least one problem"
    for line in error.errors:
        assert ": " in line or line.startswith(DOCUMENT_LEVEL), f"error line without 'path: reason': {line!r}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300) | VALUES.map(lambda v: yaml.safe_dump(v)))
def test_any_text_loads_or_is_refused_with_a_config_error(text: str) -> None:
    try:
        load_text(text)
    except ConfigError as exc:
        assert_well_formed(exc)


def set_path(document: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = document
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return
    node[path[-1]] = value


def related(error_path: str, mutated: tuple[str, ...]) -> bool:
    """The error is about the mutated setting, something inside it, or the section (or list item) holding it."""
    tokens = re.findall(r'\[("(?:[^"\\]|\\.)*")\]|([^.\[\]]+)', error_path)
    parts = [json.loads(quoted) if quoted else plain for quoted, plain in tokens]
    parts = [p for p in parts if not p.isdigit()]
    return parts[: len(mutated)] == list(mutated[: len(parts)])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS) | st.tuples(st.sampled_from(["mqtt", "model", "zzz"]), st.text(min_size=1,
                                                                                                   max_size=8)),
       value=VALUES)
def test_one_bad_setting_is_named_in_the_error(path: tuple[str, ...], value: Any) -> None:
    document: dict[str, Any] = {"device_id": "box-1", "mqtt": {"port": 1883}}
    set_path(document, path, value)
    try:
        load_text(yaml.safe_dump(document))
    except ConfigError as exc:
        assert_well_formed(exc)
        paths = [line.split(": ", 1)[0] for line in exc.errors]
        assert any(related(p, path) for p in paths), f"{'.'.join(path)}={value!r} refused as {exc.errors}"
