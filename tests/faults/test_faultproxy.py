"""The fault proxy itself, against a loopback echo server: each mode does what the fault tests rely on."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faultproxy import FaultProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A loopback TCP echo server (one thread per connection)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept_loop() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[FaultProxy]:
    with FaultProxy(echo_port) as p:
        yield p


def connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


def roundtrip(sock: socket.socket, data: bytes, timeout_s: float = 2.0) -> bytes:
    sock.settimeout(timeout_s)
    sock.sendall(data)
    got = b""
    try:
        while len(got) < len(data):
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    except TimeoutError:
        pass
    return got


def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert roundtrip(sock, b"hello") == b"hello"


def test_delay_holds_every_chunk_back_and_keeps_order(proxy: FaultProxy) -> None:
    proxy.set_mode("delay", delay_s=0.3)
    with connect(proxy) as sock:
        t0 = time.monotonic()
        got = roundtrip(sock, b"abc", timeout_s=3)
        elapsed = time.monotonic() - t0
    # 0.3 s each way through the proxy: at least 0.6 s for a round trip
    assert got == b"abc" and elapsed >= 0.6, f"got {got!r} after {elapsed:.2f} s, expected b'abc' after >= 0.6 s"


def test_cut_closes_open_connections_and_refuses_new_ones_until_pass(proxy: FaultProxy) -> None:
    sock = connect(proxy)
    assert roundtrip(sock, b"x") == b"x"
    proxy.set_mode("cut")
    time.sleep(0.2)
    sock.settimeout(2)
    assert sock.recv(10) == b"", "an open connection must see EOF when the link is cut"
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    proxy.set_mode("pass")
    time.sleep(0.2)
    with connect(proxy) as again:
        assert roundtrip(again, b"back") == b"back"


def test_blackhole_keeps_sockets_open_moves_nothing_then_resumes_the_stream(proxy: FaultProxy) -> None:
    old = connect(proxy)
    assert roundtrip(old, b"1") == b"1"
    proxy.set_mode("blackhole")
    time.sleep(0.2)
    assert roundtrip(old, b"lost?", timeout_s=1.0) == b"", "a blackholed link must deliver nothing"
    new = connect(proxy)  # accepted, not refused: a blackhole gives no sign of life either way
    assert roundtrip(new, b"hello?", timeout_s=0.5) == b""
    proxy.set_mode("pass")
    # TCP keeps what was sent into the hole: it arrives once the link is back, in order
    old.settimeout(2)
    assert old.recv(100) == b"lost?", "bytes sent during the blackhole arrive after it, like TCP retransmits"
    new.settimeout(2)
    assert new.recv(100) == b"hello?"
    old.close()
    new.close()
