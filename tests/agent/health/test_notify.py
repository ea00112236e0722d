"""sd_notify against a real datagram socket, and the watchdog that pings only while every loop is alive."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.health.notify import Notifier, Watchdog, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    yield path, sock
    sock.close()


def receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def nothing_waiting(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    return False


def test_ready_status_and_watchdog_reach_the_socket(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier(path)
    assert notifier.ready(status="model loaded")
    assert receive(sock) == {"READY": "1", "STATUS": "model loaded"}
    notifier.status("3 cameras online")
    assert receive(sock) == {"STATUS": "3 cameras online"}
    notifier.watchdog()
    assert receive(sock) == {"WATCHDOG": "1"}
    notifier.stopping()
    assert receive(sock) == {"STOPPING": "1"}
    notifier.reloading()
    reloading = receive(sock)
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    notifier.close()


def test_notify_socket_comes_from_the_environment(listener: tuple[str, socket.socket],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path, sock = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert Notifier().ready()
    assert receive(sock) == {"READY": "1"}


def test_abstract_namespace_socket() -> None:
    name = f"edge-inspect-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        assert Notifier("@" + name).watchdog()
        assert receive(sock) == {"WATCHDOG": "1"}
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone.sock")).ready()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_pings_only_while_all_loops_are_alive(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    watchdog = Watchdog(Notifier(path), interval_s=1.0)
    capture = watchdog.register("capture", max_age_s=0.2)
    inference = watchdog.register("inference", max_age_s=60)
    mqtt_ok = [True]
    watchdog.register_probe("mqtt", lambda: mqtt_ok[0])
    assert watchdog.tick()
    assert receive(sock) == {"WATCHDOG": "1"}

    time.sleep(0.3)  # capture stops beating
    inference.beat()
    assert not watchdog.tick()
    assert receive(sock) == {"STATUS": "unhealthy: capture not alive"}
    assert nothing_waiting(sock)  # and no WATCHDOG=1

    capture.beat()
    mqtt_ok[0] = False
    assert not watchdog.tick() and watchdog.stale() == ["mqtt"]
    capture.beat()
    mqtt_ok[0] = True
    assert watchdog.tick()
    assert receive(sock) == {"STATUS": "unhealthy: mqtt not alive"}
    assert receive(sock) == {"WATCHDOG": "1"}


def test_a_probe_that_raises_counts_as_dead(listener: tuple[str, socket.socket]) -> None:
    def broken() -> bool:
        raise RuntimeError("lost")

    watchdog = Watchdog(Notifier(listener[0]), interval_s=1.0)
    watchdog.register_probe("inference", broken)
    assert watchdog.stale() == ["inference"] and not watchdog.tick()


def test_watchdog_thread_pings_at_its_interval(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    watchdog = Watchdog(Notifier(path), interval_s=0.05)
    watchdog.register("capture", max_age_s=60)
    assert watchdog.start()
    try:
        assert receive(sock) == {"WATCHDOG": "1"}
        assert receive(sock) == {"WATCHDOG": "1"}
    finally:
        watchdog.stop()


def test_watchdog_does_not_start_without_systemd_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert not Watchdog(Notifier("/tmp/unused.sock")).start()


def test_a_check_name_can_only_be_registered_once() -> None:
    watchdog = Watchdog(Notifier(""), interval_s=1)
    watchdog.register("capture", 1)
    with pytest.raises(ValueError, match="capture"):
        watchdog.register("capture", 1)
