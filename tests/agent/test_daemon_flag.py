"""The line feeds back, as a PLC does it: the real daemon on its threads (a dialled detector instead of a model), a
real Mosquitto, signed commands. A part the box passed and the line later flags (`cmd/flag`) is queued for review as
a miss with the line's reason; a trigger with `expect: "defect"` is queued at once; a part the box failed needs
nothing; a part already queued gets the flag added; unknown parts and cameras, and unsigned flags, are refused."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import Daemon
from tests.agent.test_daemon_pictures import subscribed
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.inprocess import DialDetector, SignedHmi, daemon_running, signed_config, write_yaml

GATE = {"name": "gate", "source": "synthetic:seed=4,size=64", "fps": 8, "mode": "trigger"}


@pytest.fixture
def line(tmp_path: Path, mosquitto: Broker) -> Iterator[tuple[Daemon, DialDetector, SignedHmi, Subscriber]]:
    """A running daemon with one trigger-mode camera, the PLC (signing) and its result subscription."""
    config = signed_config(tmp_path, mosquitto, [GATE], station={"enabled": False},
                           model={"thresholds": {"hole": 0.5}, "uncertain_band": 0.1},
                           queue={"dedup_max_distance": 0})  # different parts' frames are never near-duplicates
    detector = DialDetector()
    results = subscribed(mosquitto)
    plc = SignedHmi(mosquitto)
    try:
        with daemon_running(write_yaml(tmp_path / "config.yaml", config), detector) as daemon:
            plc.wait_answering()
            yield daemon, detector, plc, results
    finally:
        plc.close()
        results.close()


def inspect(plc: SignedHmi, results: Subscriber, part_id: str, **trigger: Any) -> dict[str, Any]:
    """Trigger the part (again while the camera is busy or not yet online) and return its result."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = plc.ask("trigger", {"camera": "gate", "part_id": part_id, **trigger})
        if reply["ok"]:
            break
        assert reply["status"] == "busy", reply
        time.sleep(0.1)
    done = results.wait_for(lambda p: any(r["part_id"] == part_id for r in p), timeout_s=30)
    return next(r for r in done if r["part_id"] == part_id)


def queued(tmp_path: Path) -> dict[str, str]:
    with sqlite3.connect(tmp_path / "state" / "queue" / "index.sqlite3") as db:
        return dict(db.execute("SELECT part_id, reason FROM entries").fetchall())


def test_the_line_flags_parts_after_their_result_and_the_misses_are_queued_with_its_reason(
        line: Any, tmp_path: Path, mosquitto: Broker) -> None:
    daemon, detector, plc, results = line
    assert inspect(plc, results, "P-1")["verdict"] == "pass"  # no box at all
    detector.score = 0.9
    assert inspect(plc, results, "P-2")["verdict"] == "fail"
    detector.score = None
    assert inspect(plc, results, "P-3", expect="defect")["verdict"] == "pass"
    assert inspect(plc, results, "P-4")["verdict"] == "pass"
    detector.score = 0.45
    assert inspect(plc, results, "P-5")["verdict"] == "uncertain"  # within the 0.1 band: threshold-band queues it
    before = queued(tmp_path)
    assert sorted(before) == ["P-3", "P-5"] and before["P-3"].startswith("flagged-miss"), before

    missed = plc.ask("flag", {"camera": "gate", "part_id": "P-1", "reason": "leak test failed"})
    assert missed["ok"] and (missed["found"], missed["queued"], missed["verdict"]) == (True, True, "pass"), missed
    reason = queued(tmp_path)["P-1"]
    assert reason.startswith("flagged-miss") and "leak test failed" in reason, reason
    assert daemon.queue.get(missed["entry"]).part_id == "P-1"

    agreed = plc.ask("flag", {"camera": "gate", "part_id": "P-2"})
    assert agreed["ok"] and agreed["found"] and not agreed["queued"] and "failed this part too" in agreed["reason"]
    again = plc.ask("flag", {"camera": "gate", "part_id": "P-5", "reason": "burr found at assembly"})
    assert again["ok"] and again["queued"] and again["already_queued"], again
    assert queued(tmp_path)["P-5"].startswith("threshold-band") and "burr found at assembly" in queued(tmp_path)["P-5"]
    assert sorted(queued(tmp_path)) == ["P-1", "P-3", "P-5"], "P-2 (failed) and P-4 (not flagged) stay out"

    never = plc.ask("flag", {"camera": "gate", "part_id": "P-404"})
    assert not never["ok"] and not never["found"] and "no part 'P-404'" in never["error"], never
    nowhere = plc.ask("flag", {"camera": "dock", "part_id": "P-1"})
    assert not nowhere["ok"] and "unknown camera 'dock'" in nowhere["error"], nowhere
    malformed = plc.ask("flag", {"camera": "gate"})
    assert not malformed["ok"] and "part_id" in malformed["error"], malformed
    unsigned = SignedHmi(mosquitto, key=None)
    try:
        forged = unsigned.ask("flag", {"camera": "gate", "part_id": "P-4"})
    finally:
        unsigned.close()
    assert not forged["ok"] and "unsigned command" in forged["error"], forged
    assert sorted(queued(tmp_path)) == ["P-1", "P-3", "P-5"]
