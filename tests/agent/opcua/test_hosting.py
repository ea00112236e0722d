"""Starting the OPC UA server inside the daemon: not at all when disabled (asyncua never imported), and a server that
cannot start leaves the daemon inspecting without it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from agent.handshake import Handshake
from agent.opcua.config import OpcUaConfig
from agent.opcua.hosting import DaemonParts, start_opcua


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
