"""A private Mosquitto broker on a free port in a temp dir: for the demo, benchmarks and tests.

Persistence autosaves on every change so that a broker SIGKILLed mid-stream restarts with its sessions and queued
QoS 1 messages, as a production broker with persistence would. It can be killed and restarted on the same port.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.ports import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0


@dataclass
class Broker:
    """One Mosquitto process bound to 127.0.0.1:`port`; keeps its port across restarts."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_conf: str = ""
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            # mosquitto started as root drops to user 'mosquitto', which could not write the temp dir
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_on_changes true\n"
            "autosave_interval 1\n"
            f"log_dest file {self.log_path}\n"
            "log_type all\n"
            f"{self.extra_conf}\n"
        )
        return conf

    def start(self) -> None:
        conf = self.write_config()
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {err}\n{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto not listening on {self.port} after {START_TIMEOUT_S} s\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no clean disconnects, no final save (what a crash or power cut looks like)."""
        self._signal_and_wait(signal.SIGKILL)

    def stop(self) -> None:
        self._signal_and_wait(signal.SIGTERM)

    def restart(self) -> None:
        self.kill()
        self.start()

    def _signal_and_wait(self, sig: signal.Signals) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no broker log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def make_broker(workdir: Path, extra_conf: str = "") -> Broker:
    broker = Broker(workdir=workdir, extra_conf=extra_conf)
    broker.start()
    return broker
