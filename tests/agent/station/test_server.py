"""The server runner: its own thread, port 0 readable after start(), errors in the caller, TLS, a prompt stop()."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from agent.station import server as server_module
from agent.station.server import NICE, StationServer, lower_this_threads_priority
from tests.agent.station.conftest import PASSWORDS, make_station, station_config


def get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.status, response.read()


def test_start_returns_at_once_with_the_bound_port_and_stop_ends_the_thread(tmp_path: Path) -> None:
    made = make_station(tmp_path, station_config(port=0))
    server = StationServer(made.app, made.app.state.station.config)
    started = time.perf_counter()
    port = server.start()
    assert time.perf_counter() - started < 2.0
    assert port > 0 and server.port == port and server.url == f"http://127.0.0.1:{port}/"
    assert get(f"http://127.0.0.1:{port}/healthz") == (200, b'{"status":"ok"}')
    thread = server._thread
    server.stop()
    assert thread is not None and not thread.is_alive()
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/healthz")


def test_a_port_in_use_fails_in_the_caller(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        made = make_station(tmp_path, station_config(port=taken.getsockname()[1]))
        server = StationServer(made.app, made.app.state.station.config)
        with pytest.raises(OSError):
            server.start()


def login_cookie(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/login", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"name": "view", "password": PASSWORDS["view"]}).encode())
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.headers["set-cookie"]).split(";")[0]


def test_stop_ends_open_live_streams_promptly(tmp_path: Path) -> None:
    made = make_station(tmp_path, station_config(port=0))
    server = StationServer(made.app, made.app.state.station.config)
    port = server.start()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/live", headers={"Cookie": login_cookie(port)})
    stream = urllib.request.urlopen(request, timeout=10)
    assert stream.readline().startswith(b"retry:")
    reader = threading.Thread(target=stream.read)
    reader.start()
    started = time.perf_counter()
    server.stop()
    reader.join(5)
    assert time.perf_counter() - started < 3.0 and not reader.is_alive()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_tls_when_configured(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    made = make_station(tmp_path, station_config(port=0, tls_cert_file=str(cert), tls_key_file=str(key)))
    server = StationServer(made.app, made.app.state.station.config)
    port = server.start()
    try:
        assert server.url == f"https://127.0.0.1:{port}/"
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        assert get(f"https://127.0.0.1:{port}/healthz", context)[0] == 200
    finally:
        server.stop()


def test_a_missing_tls_file_fails_in_the_caller(tmp_path: Path) -> None:
    made = make_station(tmp_path, station_config(port=0, tls_cert_file=str(tmp_path / "no.pem"),
                                                 tls_key_file=str(tmp_path / "no.key")))
    with pytest.raises(OSError):
        StationServer(made.app, made.app.state.station.config).start()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="per-thread nice values are a Linux feature")
def test_the_servers_threads_and_the_workers_they_start_run_at_the_lowest_cpu_priority() -> None:
    seen: dict[str, int] = {}

    def worker() -> None:
        seen["worker"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def server_thread() -> None:
        lower_this_threads_priority(NICE)
        seen["server"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        started = threading.Thread(target=worker)  # like the event loop's thread pool
        started.start()
        started.join()

    thread = threading.Thread(target=server_thread)
    thread.start()
    thread.join()
    assert seen == {"server": NICE, "worker": NICE}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != NICE  # the caller (inspection) is untouched


def test_an_idle_server_wakes_about_once_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = make_station(tmp_path, station_config(port=0))
    server = StationServer(made.app, made.app.state.station.config)
    ticks: list[int] = []
    original = server_module.QuietServer.on_tick

    async def counted(self: server_module.QuietServer, counter: int) -> bool:
        ticks.append(counter)
        return await original(self, counter)

    monkeypatch.setattr(server_module.QuietServer, "on_tick", counted)
    server.start()
    time.sleep(2.0)  # uvicorn's own loop ticks 20 times in 2 s; a busy machine can only make it fewer
    server.stop()
    assert 1 <= len(ticks) <= 4
    assert all(counter % 10 == 0 for counter in ticks)  # each tick refreshes the Date header


def test_stop_wakes_the_sleeping_server_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "TICK_S", 3600.0)  # without the wake-up, stop() would wait out this tick
    made = make_station(tmp_path, station_config(port=0))
    server = StationServer(made.app, made.app.state.station.config)
    port = server.start()
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    thread = server._thread
    server.stop(timeout=30)
    assert thread is not None and not thread.is_alive()
