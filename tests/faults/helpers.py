"""Helpers shared by the fault tests: waiting on results, reading the daemon's logs, metrics and databases."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path

from agent.control.replay import as_ranges
from agent.statedir import StateDir
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import DaemonProcess, gap_report, send_command, unique_seqs


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


def drain_and_check_every_seq(daemon: DaemonProcess, results: Subscriber, state_dir: Path, context: str,
                              replayed: Collection[int] = ()) -> int:
    """SIGTERM the daemon (it delivers its outbox), then require seqs 1..last exactly once each, in order, except the
    `replayed` ones, which must have come again flagged `replay` (`replay_what_the_broker_lost`).

    Returns the last seq allocated. Seqs still in the outbox after the drain (none when the broker is up) must be
    the newest ones; they are delivered on the next start.
    """
    assert daemon.terminate() == 0, f"daemon did not exit cleanly ({context}):\n{daemon.log_tail()}"
    last, pending = outbox_state(state_dir)
    delivered_upto = min(pending, default=last + 1) - 1
    results.wait_for(lambda p: max_seq(p) >= delivered_upto, timeout_s=30)
    seqs = unique_seqs([p for p in results.payloads() if not p.get("replay")])
    again = {p["seq"] for p in results.payloads() if p.get("replay")}
    missing, disorder = gap_report([1, *seqs]) if seqs else ([], [])
    figures = (f"{len(seqs)} unique of {len(results.payloads())} received, last allocated seq {last}, "
               f"{len(pending)} still in the outbox, missing {missing[:30]}, out of order {disorder[:20]}, "
               f"replayed {sorted(replayed)[:30]}; {context}")
    asked_again = set(replayed)
    expected = [seq for seq in range(1, delivered_upto + 1) if seq not in asked_again]
    assert seqs == expected and asked_again <= again, \
        f"results lost, duplicated or out of order: {figures}\n{daemon.log_tail()}"
    return last


def replay_what_the_broker_lost(broker: Broker, results: Subscriber) -> list[int]:
    """The consumer's side of the protocol (docs/mqtt.md, `cmd/replay`): seqs missing between those that arrived are
    asked for again, and must come back flagged. Mosquitto SIGKILLed after its PUBACK but before its save loses
    those messages, which no client can prevent (docs/reliability.md); the daemon still holds them for replay."""
    missing, _ = gap_report(unique_seqs([p for p in results.payloads() if not p.get("replay")]))
    for first, last in as_ranges(missing):
        reply = send_command(broker, "replay", json.dumps({"from_seq": first, "to_seq": last}).encode())
        assert reply["ok"] and reply["pruned"] == [] and reply["pending"] == [], reply
    came = results.wait_for(lambda p: set(missing) <= {x["seq"] for x in p if x.get("replay")}, timeout_s=30)
    assert set(missing) <= {x["seq"] for x in came if x.get("replay")}, f"asked again for {missing}, not all came"
    return missing


def wait_reconnected(sub: Subscriber, connects_before: int, timeout_s: float) -> bool:
    """Wait until the subscriber has connected again since it had connected `connects_before` times."""
    return wait_until(lambda: sub.connects > connects_before, timeout_s)
