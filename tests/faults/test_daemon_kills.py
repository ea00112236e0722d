"""Power-cut stand-in: the daemon SIGKILLed 20 times at random moments while it inspects, stores and publishes.

After every kill both SQLite databases (outbox, learning queue) pass `PRAGMA integrity_check`; the restarted daemon
reports READY=1 to the `$NOTIFY_SOCKET` the test holds (as systemd would), and at the end every seq ever allocated
has reached the persistent subscriber exactly once, in order.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import pytest

from agent.statedir import StateDir
from tests.faults.helpers import drain_and_check_every_seq, max_seq, wait_for_more
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import DaemonProcess, NotifyListener, integrity, write_config

pytestmark = pytest.mark.faults

KILLS = 20
MAX_KILL_DELAY_S = 2.0  # after READY: inside start-up resends, inspection, queue writes and publishing
READY_TIMEOUT_S = 120.0  # generous: a cold interpreter imports torch + transformers on 2 shared cores


def start_and_wait_ready(config: Path, log: Path, notify: NotifyListener) -> tuple[DaemonProcess, float]:
    """Start the daemon; returns it with the seconds from exec to READY=1."""
    daemon = DaemonProcess(config, log, notify=notify)
    ready_at = notify.wait_for("READY", "1", after=daemon.started_at, timeout_s=READY_TIMEOUT_S)
    assert ready_at is not None, f"no READY=1 within {READY_TIMEOUT_S} s\n{daemon.log_tail()}"
    return daemon, ready_at - daemon.started_at


@pytest.mark.timeout(1200)  # 21 cold starts: ~4 min alone on 2 cores, far more when the cores are shared
def test_twenty_sigkills_at_random_moments_lose_no_seq_and_leave_sound_databases(
        tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker, results: Subscriber) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    state = tmp_path / "state"
    # every frame offered to the learning queue too, so kills also land in the middle of queue writes
    config = write_config(tmp_path, tiny_model_dir, mosquitto, queue={"per_minute": 1000, "random_rate": 1.0,
                                                                      "dedup_max_distance": 0})
    notify = NotifyListener()
    ready_s: list[float] = []
    killed_after: list[float] = []
    daemon: DaemonProcess | None = None
    try:
        for kill in range(KILLS):
            daemon, seconds = start_and_wait_ready(config, tmp_path / "daemon.log", notify)
            ready_s.append(seconds)
            killed_after.append(rng.uniform(0.0, MAX_KILL_DELAY_S))
            time.sleep(killed_after[-1])
            daemon.kill()
            checks = {db.name: integrity(db) for db in (StateDir(state).outbox, StateDir(state).queue_index)}
            assert set(checks.values()) == {"ok"}, f"kill {kill} (seed {seed}, {killed_after[-1]:.2f} s after " \
                                                   f"READY): integrity_check {checks}"
        daemon, seconds = start_and_wait_ready(config, tmp_path / "daemon.log", notify)
        ready_s.append(seconds)
        wait_for_more(results, max_seq(results.payloads()), timeout_s=60)
        figures = (f"{KILLS} kills (seed {seed}) at {[round(k, 2) for k in killed_after]} s after READY; READY after "
                   f"median {statistics.median(ready_s):.1f} s, max {max(ready_s):.1f} s of {len(ready_s)} starts")
        last = drain_and_check_every_seq(daemon, results, state, figures)
    finally:
        notify.close()
        if daemon is not None:
            daemon.ensure_dead()
    print(f"\n{figures}; {last} results, all delivered")
    assert last >= KILLS, f"only {last} results over {KILLS} restarts: the kills did not hit a working daemon"
