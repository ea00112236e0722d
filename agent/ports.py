"""Free loopback ports for the demo, the benches and the tests, that stay free until their server binds them.

A port the kernel picks with `bind(0)` comes from the ephemeral range, the same range it draws every outgoing
connection's source port from: between picking a port and the server binding it, an MQTT client or an HTTP request
elsewhere on the machine may take it (seen in CI: a station moved to its new port found it "already in use").
So ports are drawn from outside that range, and each one is claimed machine-wide with a lock file held for the life
of the process, so two processes running at once (pytest workers, a demo beside the suite) never get the same one.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

LOWEST_PORT = 10000  # below it live well-known services (1883, 4840, 8080 …)
HIGHEST_PORT = 65535
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
CLAIM_DIR = Path(tempfile.gettempdir()) / "edge-inspect-ports"
_claims: dict[int, int] = {}  # port -> fd of its held lock file; closed only when the process ends


def free_port() -> int:
    """A loopback TCP port nobody listens on, outside the ephemeral range, not handed to any other live process."""
    candidates = non_ephemeral_ports()
    for port in random.sample(candidates, k=min(len(candidates), 200)):
        if port not in _claims and claim(port) and bindable(port):
            return port
    return kernel_port()  # no range left outside the ephemeral one: the kernel's choice, as before


def non_ephemeral_ports() -> list[int]:
    low, high = ephemeral_range()
    return [p for p in range(LOWEST_PORT, HIGHEST_PORT + 1) if not low <= p <= high]


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default, and what a machine without /proc is assumed to use


def claim(port: int) -> bool:
    """Take the machine-wide lock for `port`; released by the kernel when this process exits, however it exits."""
    CLAIM_DIR.mkdir(mode=0o1777, exist_ok=True)
    fd = os.open(CLAIM_DIR / str(port), os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _claims[port] = fd
    return True


def bindable(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now (with SO_REUSEADDR, as uvicorn and Mosquitto bind)."""
    try:
        with socket.create_server(("127.0.0.1", port)):
            return True
    except OSError:
        return False


def kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
