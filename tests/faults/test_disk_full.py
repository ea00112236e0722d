"""Disk budget spent: the outbox (64 KiB, its minimum) fills while the broker is down; the learning queue (1 MiB)
fills with every frame offered to it.

Inspection must go on (batches keep being inspected), the outbox refuses the newest results without giving them a
seq and raises an `outbox_alarm` event, the queue evicts its oldest entries and raises `queue_alarm`, and once the
broker is back every stored seq arrives, gap-free, with both databases intact.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from agent.statedir import StateDir
from tests.faults.helpers import drain_and_check_every_seq, metric, wait_for_more, wait_until
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DaemonProcess, integrity, write_config

pytestmark = pytest.mark.faults

OUTBOX_BYTES = 64 * 1024
QUEUE_BYTES = 1024 * 1024
BATCHES = "edge_inspect_inference_latency_seconds_count"


def refusals(daemon: DaemonProcess) -> int:
    return sum(r.get("msg") == "result not stored: outbox full" for r in daemon.log_records())


def queue_bytes(state: Path) -> int:
    with sqlite3.connect(StateDir(state).queue_index, timeout=10) as db:
        return int(db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0])


def test_full_outbox_and_queue_keep_inspecting_raise_alarms_and_corrupt_nothing(
        tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker, results: Subscriber) -> None:
    config = write_config(tmp_path, tiny_model_dir, mosquitto,
                          outbox={"max_bytes": OUTBOX_BYTES, "alarm_fraction": 0.5},
                          queue={"max_bytes": QUEUE_BYTES, "per_minute": 10000, "per_hour": 100000,
                                 "random_rate": 1.0, "dedup_max_distance": 0})
    metrics_port = int(yaml.safe_load(config.read_text())["metrics"]["port"])
    events = Subscriber(mosquitto, f"{BASE}/events", client_id="hmi-events")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    state = tmp_path / "state"
    try:
        assert wait_for_more(results, 0, timeout_s=120) > 0, daemon.log_tail()
        mosquitto.kill()
        full = wait_until(lambda: refusals(daemon) >= 20, 180, step_s=0.5)
        batches_full = metric(metrics_port, BATCHES) or 0.0
        time.sleep(3.0)
        batches_later = metric(metrics_port, BATCHES) or 0.0
        outbox_bytes = metric(metrics_port, "edge_inspect_outbox_bytes")
        refused = refusals(daemon)
        mosquitto.start()
        alarms = events.wait_for(lambda p: any(e["event"] == "outbox_alarm" and not e["active"] for e in p), 90)
        last = drain_and_check_every_seq(daemon, results, state, f"outbox of {OUTBOX_BYTES} bytes filled")
    finally:
        events.close()
        daemon.ensure_dead()
    outbox_alarms = [(e["active"], e["refused"]) for e in alarms if e["event"] == "outbox_alarm"]
    queue_alarms = [e for e in alarms if e["event"] == "queue_alarm"]
    checks = {"outbox": integrity(StateDir(state).outbox), "queue": integrity(StateDir(state).queue_index)}
    figures = (f"{refused} results refused while full, outbox {outbox_bytes} of {OUTBOX_BYTES} bytes, detector "
               f"batches {batches_full:.0f} -> {batches_later:.0f} in 3 s while full, {last} results stored and "
               f"delivered, outbox alarms (active, refused) first/last {outbox_alarms[:1]}/{outbox_alarms[-1:]} "
               f"of {len(outbox_alarms)}, {len(queue_alarms)} queue alarms, queue {queue_bytes(state)} of "
               f"{QUEUE_BYTES} bytes, integrity {checks}")
    print(f"\ndisk full: {figures}")
    assert full and batches_later > batches_full, f"inspection stopped when the outbox was full: {figures}"
    assert outbox_bytes is not None and outbox_bytes <= OUTBOX_BYTES, f"outbox over its budget: {figures}"
    assert any(active and n > 0 for active, n in outbox_alarms), f"no alarm naming refused results: {figures}"
    assert outbox_alarms[-1][0] is False, f"alarm not cleared after the drain: {figures}"
    assert queue_alarms and queue_bytes(state) <= QUEUE_BYTES, f"queue budget not enforced/announced: {figures}"
    assert set(checks.values()) == {"ok"}, f"database damaged: {figures}"
