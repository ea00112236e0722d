"""Starting the OPC UA server inside the daemon: not at all when disabled (asyncua never imported), and a server that
cannot start leaves the daemon inspecting without it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from agent.config.opcua import OpcUaConfig
from agent.handshake import Handshake
from agent.opcua.hosting import DaemonParts, job_switch, start_opcua
from tests.agent.store.helpers import add, new_store


class Publisher:
    def publish_handshake(self, camera: str, **fields: Any) -> None:
        pass

    def publish_event(self, kind: str, **fields: Any) -> None:
        pass


def parts(config: OpcUaConfig, tmp_path: Path) -> DaemonParts:
    return DaemonParts(config, "line1", {"gate": "trigger"}, tmp_path, lambda: None, Handshake({}, Publisher()),
                       lambda: "tiny", "tiny")


def test_a_daemon_with_opcua_disabled_never_imports_asyncua() -> None:
    code = "import sys, agent.daemon; print('asyncua' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_disabled_starts_nothing(tmp_path: Path) -> None:
    assert start_opcua(parts(OpcUaConfig(), tmp_path)) is None


def test_a_taken_port_leaves_the_daemon_without_opcua(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config = OpcUaConfig.model_validate({
            "enabled": True, "port": taken.getsockname()[1], "security_policies": ["None"],
            "users": [{"name": "plc", "password_hash": PasswordHasher().hash("pw")}]})
        assert start_opcua(parts(config, tmp_path)) is None


def test_select_job_promotes_a_store_version_and_serves_it(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    v1, v2 = add(store, tmp_path, "a", 1.0), add(store, tmp_path, "b", 2.0)
    store.promote(v1)
    served: list[str | None] = []

    def reload_model() -> str:
        served.append(store.current())
        return f"tiny+{store.current()}"

    select = job_switch(lambda: None, store, reload_model)
    assert select(v2) == f"tiny+{v2}" and store.current() == v2 and served == [v2]
    with pytest.raises(LookupError, match="no model version 'v0099'"):
        select("v0099")


def test_a_job_that_does_not_load_is_switched_back(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    v1, v2 = add(store, tmp_path, "a", 1.0), add(store, tmp_path, "b", 2.0)
    store.promote(v1)

    def failing_reload() -> str:
        raise ValueError("the detector refused the adapter")

    with pytest.raises(RuntimeError, match="could not load"):
        job_switch(lambda: None, store, failing_reload)(v2)
    assert store.current() == v1


def test_a_pinned_adapter_refuses_select_job(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    v1 = add(store, tmp_path, "a", 1.0)
    with pytest.raises(RuntimeError, match="pins the served adapter"):
        job_switch(lambda: Path("/opt/adapter"), store, lambda: "x")(v1)
    assert store.current() is None
