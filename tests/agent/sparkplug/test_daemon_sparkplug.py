"""Sparkplug B end to end, as Ignition would see a real daemon (`edge-inspect run`, tiny model, a free-run and a
trigger-mode synthetic camera, a real Mosquitto), decoded by the independent host: every DDATA shows the JSON result
of the same seq, a DCMD trigger inspects a part, a SIGKILL leaves the will's NDEATH with its session's bdSeq, and
the restarted daemon is born with the next bdSeq and sends every result it had not confirmed."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.agent.sparkplug.conftest import GROUP
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DEVICE, DaemonProcess, unique_seqs, write_config
from tests.fixtures.sparkplug_host import SparkplugHost, metrics_of, of_type

pytestmark = pytest.mark.slow

CAMERAS = [{"name": "cam0", "source": "synthetic:seed=1,size=128", "fps": 3},
           {"name": "gate", "source": "synthetic:seed=3,size=128", "fps": 4, "mode": "trigger"}]
DCMD = f"spBv1.0/{GROUP}/DCMD/{DEVICE}/gate"


def ddata_by_seq(host: SparkplugHost) -> dict[int, dict]:
    return {metrics_of(m)["Inspection/Result Seq"]: metrics_of(m) for m in of_type(host.received(), "DDATA")
            if "Inspection/Result Seq" in metrics_of(m)}


def test_ignition_sees_every_result_triggers_a_part_and_survives_a_sigkill(tmp_path: Path, tiny_model_dir: Path,
                                                                        spb_broker: Broker, host: SparkplugHost
                                                                        ) -> None:
    config = write_config(tmp_path, tiny_model_dir, spb_broker, CAMERAS,
                          sparkplug={"enabled": True, "group_id": GROUP, "allow_commands": True})
    results = Subscriber(spb_broker, f"{BASE}/cameras/+/result", client_id=f"plc-{uuid.uuid4().hex[:6]}")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        first = host.wait_for(lambda ms: len(of_type(ms, "DDATA", "cam0")) >= 3, 120)
        assert len(of_type(first, "DDATA", "cam0")) >= 3, daemon.log_tail()
        host.send({"topic": DCMD, "dcmd": [["Command/Trigger", "STRING", "P-SPB-1"]]})
        host.wait_for(lambda ms: any(metrics_of(m).get("Inspection/Part Id") == "P-SPB-1"
                                     for m in of_type(ms, "DDATA", "gate")), 30)
        daemon.kill()  # no goodbye: the broker publishes the will after ~1.5 x keepalive
        host.wait_for(lambda ms: bool(of_type(ms, "NDEATH")), 20)
        last = max(ddata_by_seq(host))
        daemon = DaemonProcess(config, tmp_path / "daemon.log")
        host.wait_for(lambda ms: len(of_type(ms, "NBIRTH")) == 2 and max(ddata_by_seq(host)) >= last + 3, 120)
        assert daemon.terminate() == 0, daemon.log_tail()
        seen = host.wait_for(lambda ms: len(of_type(ms, "NDEATH")) == 2, 10)
        published = results.wait_for(lambda p: max(unique_seqs(p)) >= max(ddata_by_seq(host)), 20)
    finally:
        results.close()
        daemon.ensure_dead()
    births, deaths = of_type(seen, "NBIRTH"), of_type(seen, "NDEATH")
    assert [metrics_of(m)["bdSeq"] for m in births] == [metrics_of(m)["bdSeq"] for m in deaths] == [0, 1]
    answers = [metrics_of(m) for m in of_type(seen, "DDATA", "gate") if "Command/Trigger Answer" in metrics_of(m)]
    assert answers == [{"Command/Trigger": "P-SPB-1", "Command/Trigger Answer": "accepted"}]
    shown = ddata_by_seq(host)
    assert [m["Inspection/Part Id"] for m in shown.values() if m["Inspection/Part Id"]] == ["P-SPB-1"]
    assert sorted(shown) == list(range(1, max(shown) + 1)), "a result never reached the Sparkplug host"
    by_seq = {p["seq"]: p for p in published}
    assert set(shown) <= set(by_seq), "Sparkplug showed a result the JSON topic never carried"
    for seq, metrics in shown.items():
        result = by_seq[seq]
        assert (metrics["Inspection/Verdict"], metrics["Inspection/Part Id"], metrics["Inspection/Model Version"]) \
            == (result["verdict"], result["part_id"], result["model"])
        assert metrics["Inspection/Defect Count"] == len(result["defects"]), seq
        assert metrics["Inspection/Processing Time ms"] == result["latency_ms"], seq
