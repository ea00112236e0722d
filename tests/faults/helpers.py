"""Helpers shared by the fault tests: waiting on results, reading the daemon's logs, metrics and databases."""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from agent.statedir import StateDir
from tests.fixtures.broker import Subscriber
from tests.fixtures.daemon import DaemonProcess, gap_report, unique_seqs


def max_seq(payloads: list[dict]) -> int:
    return max((p["seq"] for p in payloads), default=0)


def wait_for_more(sub: Subscriber, than: int, timeout_s: float) -> int:
    """Wait until a result with seq > `than` arrived; returns the highest seq seen (the caller asserts)."""
    return max_seq(sub.wait_for(lambda p: max_seq(p) > than, timeout_s=timeout_s))


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return False


def log_times(daemon: DaemonProcess, msg: str) -> list[float]:
    """Unix times (from the log's own `ts`) of every daemon log record whose `msg` is `msg`."""
    return [datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()
            for r in daemon.log_records() if r.get("msg") == msg and "ts" in r]


def metric(port: int, name: str, timeout_s: float = 2.0) -> float | None:
    """One sample of the daemon's Prometheus endpoint (summed over labels), None when unreachable or absent."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = [float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(values) if values else None


def outbox_state(state_dir: Path) -> tuple[int, list[int]]:
    """(highest seq ever allocated, seqs still waiting in the outbox) read from the daemon's database."""
    with sqlite3.connect(StateDir(state_dir).outbox, timeout=10) as db:
        next_seq = int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
        pending = [int(r[0]) for r in db.execute("SELECT seq FROM outbox WHERE delivered_at IS NULL ORDER BY seq")]
    return next_seq - 1, pending


def drain_and_check_every_seq(daemon: DaemonProcess, results: Subscriber, state_dir: Path, context: str) -> int:
    """SIGTERM the daemon (it delivers its outbox), then require seqs 1..last exactly once each, in order.

    Returns the last seq allocated. Seqs still in the outbox after the drain (none when the broker is up) must be
    the newest ones; they are delivered on the next start.
    """
    assert daemon.terminate() == 0, f"daemon did not exit cleanly ({context}):\n{daemon.log_tail()}"
    last, pending = outbox_state(state_dir)
    delivered_upto = min(pending, default=last + 1) - 1
    results.wait_for(lambda p: max_seq(p) >= delivered_upto, timeout_s=30)
    seqs = unique_seqs(results.payloads())
    missing, disorder = gap_report([1, *seqs]) if seqs else ([], [])
    figures = (f"{len(seqs)} unique of {len(results.payloads())} received, last allocated seq {last}, "
               f"{len(pending)} still in the outbox, missing {missing[:30]}, out of order {disorder[:20]}; {context}")
    assert seqs == list(range(1, delivered_upto + 1)), \
        f"results lost, duplicated or out of order: {figures}\n{daemon.log_tail()}"
    return last


def wait_reconnected(sub: Subscriber, connects_before: int, timeout_s: float) -> bool:
    """Wait until the subscriber has connected again since it had connected `connects_before` times."""
    return wait_until(lambda: sub.connects > connects_before, timeout_s)
