"""A small TCP fault proxy on 127.0.0.1 for tests: put it between the daemon and a real Mosquitto, then break the link.

Modes (switch any time with `set_mode`):

- `pass`: forward both ways (optionally each chunk `delay_s` late, order kept).
- `cut`: close every connection and refuse new ones (the listening socket is closed: ECONNREFUSED), like a
  broker host that went away or a cable pulled on a switch that answers with resets.
- `blackhole`: keep every socket open but move no byte and notice no close, like a dead Wi-Fi link or a firewall
  that drops packets: nothing is refused, nothing arrives, only keepalive timers can tell. New connections are
  accepted and held the same way. Bytes are not read while blackholed, so the kernel buffers them as TCP would, and
  forwarding resumes where it stopped when the mode goes back to `pass` (ends that closed meanwhile then close).
- `delay`: `pass` with `delay_s` added to every chunk.

One selector thread does all the work; `set_mode` wakes it through a socket pair.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "cut", "blackhole", "delay"]
CHUNK = 65536


@dataclass
class _Link:
    """One proxied connection: the accepted client socket and its upstream socket (None until connected)."""

    client: socket.socket
    upstream: socket.socket | None = None
    closed: bool = False

    def peer(self, sock: socket.socket) -> socket.socket | None:
        return self.upstream if sock is self.client else self.client


@dataclass(order=True)
class _Pending:
    due: float
    order: int
    data: bytes = field(compare=False)
    target: socket.socket = field(compare=False)
    link: _Link = field(compare=False)


class FaultProxy:
    """Listens on 127.0.0.1:`port` (a free one by default) and forwards to `upstream_port` on 127.0.0.1."""

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.accepted = 0  # connections accepted since start, for assertion messages
        self._listener: socket.socket | None = None
        self.port = port
        self._links: list[_Link] = []
        self._pending: list[_Pending] = []  # delayed chunks, a heap by due time
        self._order = itertools.count()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fault-proxy", daemon=True)

    # ----- control (test thread) ------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._open_listener()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()
        return self

    def set_mode(self, mode: Mode, delay_s: float | None = None) -> None:
        with self._lock:
            self.mode = mode
            if delay_s is not None:
                self.delay_s = delay_s
        self._wake_w.send(b"x")

    def close(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        for link in list(self._links):
            self._close_link(link)
        self._close_listener()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----- the loop (proxy thread) ----------------------------------------------------------------------------
    def _loop(self) -> None:
        applied: Mode | None = None
        while not self._stop.is_set():
            with self._lock:
                mode = self.mode
            if mode != applied:
                self._apply(mode)
                applied = mode
            timeout = max(0.0, self._pending[0].due - time.monotonic()) if self._pending else 0.5
            for key, _events in self._sel.select(timeout):
                self._on_ready(key.fileobj, key.data, mode)  # type: ignore[arg-type]
            self._flush_due()

    def _apply(self, mode: Mode) -> None:
        """Make the sockets match `mode`: what is watched for reading decides what moves."""
        if mode == "cut":
            for link in list(self._links):
                self._close_link(link)
            self._pending.clear()
            self._close_listener()
            return
        if self._listener is None:
            self._open_listener()
        forwarding = mode != "blackhole"
        for link in list(self._links):
            if forwarding and link.upstream is None and not self._connect_upstream(link):
                continue
            for sock in (link.client, link.upstream):
                if sock is not None:
                    self._watch(sock, link, forwarding)

    def _on_ready(self, sock: socket.socket, data: object, mode: Mode) -> None:
        if data == "wake":
            with contextlib.suppress(OSError):
                sock.recv(4096)
        elif data == "listen":
            self._accept(mode)
        elif isinstance(data, _Link):
            self._forward(sock, data, mode)

    def _accept(self, mode: Mode) -> None:
        assert self._listener is not None
        try:
            client, _addr = self._listener.accept()
        except OSError:
            return
        self.accepted += 1
        link = _Link(client)
        self._links.append(link)
        if mode == "blackhole":
            return  # held: neither read nor connected upstream until the link comes back
        if self._connect_upstream(link):
            self._watch(client, link, True)
            self._watch(link.upstream, link, True)  # type: ignore[arg-type]

    def _connect_upstream(self, link: _Link) -> bool:
        try:
            link.upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            self._close_link(link)  # broker down: the client sees its connection closed, as with a real proxy
            return False
        return True

    def _forward(self, sock: socket.socket, link: _Link, mode: Mode) -> None:
        try:
            data = sock.recv(CHUNK)
        except OSError:
            data = b""
        target = link.peer(sock)
        if not data or target is None:
            self._close_link(link)
            return
        delay = self.delay_s if mode == "delay" else 0.0
        if delay <= 0 and not self._pending:
            self._send(target, data, link)
        else:
            heapq.heappush(self._pending, _Pending(time.monotonic() + delay, next(self._order), data, target, link))

    def _flush_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0].due <= now:
            item = heapq.heappop(self._pending)
            if not item.link.closed:
                self._send(item.target, item.data, item.link)

    def _send(self, target: socket.socket, data: bytes, link: _Link) -> None:
        try:
            target.sendall(data)
        except OSError:
            self._close_link(link)

    # ----- socket bookkeeping ---------------------------------------------------------------------------------
    def _watch(self, sock: socket.socket, link: _Link, reading: bool) -> None:
        registered = self._registered(sock)
        if reading and not registered:
            self._sel.register(sock, selectors.EVENT_READ, link)
        elif not reading and registered:
            self._sel.unregister(sock)

    def _registered(self, sock: socket.socket) -> bool:
        try:
            self._sel.get_key(sock)
        except (KeyError, ValueError):
            return False
        return True

    def _close_link(self, link: _Link) -> None:
        if link.closed:
            return
        link.closed = True
        for sock in (link.client, link.upstream):
            if sock is None:
                continue
            if self._registered(sock):
                self._sel.unregister(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._links.remove(link)

    def _open_listener(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._sel.register(listener, selectors.EVENT_READ, "listen")

    def _close_listener(self) -> None:
        if self._listener is None:
            return
        if self._registered(self._listener):
            self._sel.unregister(self._listener)
        self._listener.close()
        self._listener = None
