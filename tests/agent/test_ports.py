"""Ports for test brokers, stations and demos: outside the kernel's ephemeral range, never handed out twice."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent import ports


def test_a_port_is_bindable_and_outside_the_range_client_connections_draw_from() -> None:
    low, high = ports.ephemeral_range()
    port = ports.free_port()
    assert not low <= port <= high and port >= ports.LOWEST_PORT
    assert ports.bindable(port)


def test_one_process_never_gets_the_same_port_twice() -> None:
    given = [ports.free_port() for _ in range(50)]
    assert len(set(given)) == 50


def test_a_port_another_live_process_was_given_is_skipped_until_that_process_ends(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ports, "CLAIM_DIR", tmp_path)  # claims private to this test: no other process holds them
    taken, spare = unused_pair()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from agent import ports; "
         f"ports.CLAIM_DIR = Path({str(tmp_path)!r}); print(ports.claim({taken}), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        monkeypatch.setattr(ports, "non_ephemeral_ports", lambda: [taken, spare])
        assert ports.free_port() == spare
    finally:
        holder.communicate("")
    assert ports.claim(taken)  # the kernel dropped the holder's lock with the process


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        busy = server.getsockname()[1]
        spare = unused_pair()[0]
        monkeypatch.setattr(ports, "non_ephemeral_ports", lambda: [busy, spare])
        monkeypatch.setattr(ports, "claim", lambda port: True)  # only the listening socket decides here
        assert ports.free_port() == spare


def test_with_no_range_outside_the_ephemeral_one_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "non_ephemeral_ports", lambda: [])
    assert ports.bindable(ports.free_port())


def test_the_ephemeral_range_falls_back_to_linux_defaults_when_unreadable(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    assert ports.ephemeral_range() == (32768, 60999)


def unused_pair() -> tuple[int, int]:
    """Two ports no one in this process has claimed, that the test then offers as the only candidates."""
    candidates = [p for p in random.sample(ports.non_ephemeral_ports(), k=50)
                  if p not in ports._claims and ports.bindable(p)]
    return candidates[0], candidates[1]
