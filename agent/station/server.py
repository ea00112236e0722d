"""uvicorn on its own thread and event loop, so serving browsers never blocks inspection.

`start()` binds the socket in the caller's thread (a port in use or a bad TLS file raises right there) and returns
at once with the bound port (port 0 picks a free one); `stop()` ends open live streams, then the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading

import structlog
import uvicorn
from fastapi import FastAPI

from agent.station.config import StationConfig
from agent.station.guards import StationContext

log = structlog.get_logger("agent.station")
GRACEFUL_S = 2  # open connections get this long to finish on stop()
# The server's threads yield the CPU to inspection: on a box whose cores the detector keeps busy, every time slice a
# browser request takes from a detector thread stalls the whole operator (its other threads wait at the next sync).
# Linux keeps a nice value per thread and new threads inherit it, so the worker threads the event loop starts follow.
NICE = 19
TICK_S = 1.0  # uvicorn's housekeeping (Date header, exit check) once a second instead of its ten times


class QuietServer(uvicorn.Server):
    """uvicorn's server with a slower housekeeping tick: every wake-up of the station's thread takes the GIL from
    inspection, and an idle station woke ten times a second for nothing. `request_exit()` wakes it at once, so
    stopping is no slower."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        ticks = 0
        while not await self.on_tick(ticks):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            ticks = (ticks + 10) % 864000  # on_tick refreshes the Date header on multiples of 10 (one per second)

    def request_exit(self) -> None:
        """Ask the server to stop, from any thread."""
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed: it is stopping anyway
                self._loop.call_soon_threadsafe(self._wake.set)


class StationServer:
    def __init__(self, app: FastAPI, config: StationConfig) -> None:
        self.app = app
        self.config = config
        self._server: QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when the config says 0); readable from start() on."""
        if self._port is None:
            raise RuntimeError("the station server is not started")
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{scheme}://{host}:{self.port}/"

    def start(self) -> int:
        """Bind, then serve on a daemon thread; returns the bound port."""
        if self._thread is not None:
            raise RuntimeError("the station server is already started")
        uv_config = uvicorn.Config(
            self.app, host=self.config.host, port=self.config.port, log_config=None, access_log=False,
            lifespan="off", timeout_graceful_shutdown=GRACEFUL_S, server_header=False,
            ssl_certfile=self.config.tls_cert_file, ssl_keyfile=self.config.tls_key_file,
        )
        uv_config.load()  # reads the TLS files now, so a bad one fails here and not on the thread
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        self._socket = socket.create_server((self.config.host, self.config.port), family=family)
        self._port = int(self._socket.getsockname()[1])
        self._server = QuietServer(uv_config)
        self._thread = threading.Thread(target=self._serve, name="station", daemon=True)
        self._thread.start()
        log.info("station up", url=self.url)
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        """Ask live streams and the server to end; waits at most `timeout` seconds for the thread."""
        if self._server is None or self._thread is None:
            return
        context: StationContext = self.app.state.station
        context.stopping.set()
        context.grounding.close()
        self._server.request_exit()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("station server did not stop in time", timeout_s=timeout)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        lower_this_threads_priority(NICE)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # uvicorn exits via SystemExit on startup errors: log, never kill the daemon
            log.error("station server failed", error=repr(exc))
        finally:
            loop.close()


def lower_this_threads_priority(nice: int) -> None:
    """Give the calling thread (only; on Linux) and the threads it starts the nice value `nice`; elsewhere, or
    without permission to change it, nothing happens: a lower priority is an optimisation, not a requirement."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
