"""systemd notifications (sd_notify) and a watchdog that pings only while every vital loop is alive.

The protocol is a datagram of `KEY=VALUE` lines to the AF_UNIX socket in `$NOTIFY_SOCKET` (a leading '@' means
the abstract namespace). Without `$NOTIFY_SOCKET` (not under systemd, or `Type=simple`) every call is a no-op.

`Watchdog` sends `WATCHDOG=1` every `$WATCHDOG_USEC / 2` but only while all registered checks are fresh: each
vital loop (capture, inference, MQTT) either calls `beat()` on its heartbeat or is asked by a probe. If one loop
hangs, the pings stop and systemd restarts the daemon after `WatchdogSec=`; `STATUS=` names the stuck loop.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

import structlog

_log = structlog.get_logger("agent.health")


class Notifier:
    """Sends sd_notify messages; failures are logged once and never raised (the daemon must keep running)."""

    def __init__(self, socket_path: str | None = None) -> None:
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str | int) -> bool:
        """Send `KEY=VALUE` lines (keys upper-cased); True when a message was delivered."""
        if not self.enabled:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(message, self.address)
            except OSError as exc:
                self._drop_socket()
                if not self._warned:
                    _log.warning("sd_notify failed", socket=self.address.replace("\0", "@"), error=str(exc))
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """After the model and databases are loaded: systemd then considers the unit started."""
        return self.send(ready=1, **({"status": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.send(status=text.replace("\n", " "))

    def reloading(self) -> bool:
        """On SIGHUP; call `ready()` again when the reload is done (systemd `Type=notify-reload` protocol)."""
        return self.send(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> bool:
        return self.send(stopping=1)

    def watchdog(self) -> bool:
        return self.send(watchdog=1)

    def close(self) -> None:
        with self._lock:
            self._drop_socket()

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings: half of `$WATCHDOG_USEC`, or None when systemd wants no pings from this process."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the variables were meant for another process (we were forked from it)
    return int(usec) / 2 / 1_000_000


class Heartbeat:
    """A liveness check fed by its loop: fresh while `beat()` was called within `max_age_s`."""

    def __init__(self, name: str, max_age_s: float) -> None:
        if max_age_s <= 0:
            raise ValueError(f"heartbeat {name!r}: max_age_s={max_age_s} must be positive")
        self.name = name
        self.max_age_s = max_age_s
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def fresh(self) -> bool:
        return time.monotonic() - self._last <= self.max_age_s


class Watchdog:
    """Pings the systemd watchdog while every registered check passes; reports the failing ones in STATUS."""

    def __init__(self, notifier: Notifier, interval_s: float | None = None) -> None:
        self.notifier = notifier
        self.interval_s = interval_s if interval_s is not None else watchdog_interval()
        self._checks: dict[str, Callable[[], bool]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_stale: list[str] = []

    def register(self, name: str, max_age_s: float) -> Heartbeat:
        """A heartbeat the loop named `name` must `beat()` at least every `max_age_s` seconds."""
        heartbeat = Heartbeat(name, max_age_s)
        self.register_probe(name, heartbeat.fresh)
        return heartbeat

    def register_probe(self, name: str, probe: Callable[[], bool]) -> None:
        """A check asked at each tick, e.g. `lambda: all(w.loop_alive(10) for w in workers)`."""
        with self._lock:
            if name in self._checks:
                raise ValueError(f"watchdog check {name!r} is already registered")
            self._checks[name] = probe

    def stale(self) -> list[str]:
        """Names of the checks that fail now (a probe that raises counts as failing)."""
        with self._lock:
            checks = list(self._checks.items())
        failing = []
        for name, probe in checks:
            try:
                ok = probe()
            except Exception:
                _log.exception("watchdog probe raised", check=name)
                ok = False
            if not ok:
                failing.append(name)
        return failing

    def tick(self) -> bool:
        """Ping if every check passes; otherwise withhold the ping and say which loops are stuck. Returns pinged."""
        failing = self.stale()
        if failing != self._last_stale:
            if failing:
                _log.error("watchdog withheld: loops not alive", stale=failing)
                self.notifier.status(f"unhealthy: {', '.join(failing)} not alive")
            else:
                _log.info("watchdog: all loops alive again")
            self._last_stale = failing
        if failing:
            return False
        return self.notifier.watchdog()

    def start(self) -> bool:
        """Run `tick()` every interval in a daemon thread; False (and nothing started) when no watchdog is wanted."""
        if self.interval_s is None or not self.notifier.enabled or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        interval = self.interval_s or 1.0
        while not self._stop.wait(interval):
            self.tick()
