"""The edge node against a real Mosquitto, decoded by a Sparkplug host we did not write (pysparkplug and its compiled
Sparkplug B protobuf, in their own virtualenv): births, data, deaths, the bdSeq and seq rules, metric values equal
to the stored results, Rebirth, refused and malformed commands, and no result lost across reconnects."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from agent.sparkplug.node import EdgeNode
from tests.agent.sparkplug.helpers import Triggers, make_node, open_outbox, store_results
from tests.fixtures.broker import Broker
from tests.fixtures.sparkplug_host import Message, SparkplugHost, metrics_of, of_type

NODE = "spBv1.0/line-7/{kind}/box-1"


def result_seqs(messages: list[Message]) -> list[int]:
    return [metrics_of(m)["Inspection/Result Seq"] for m in of_type(messages, "DDATA")
            if "Inspection/Result Seq" in metrics_of(m)]


def births(messages: list[Message]) -> int:
    return len(of_type(messages, "NBIRTH"))


def started(node: EdgeNode, host: SparkplugHost, births_before: int = 0) -> list[Message]:
    node.start()
    return host.wait_for(lambda ms: births(ms) > births_before and len(of_type(ms[-2:], "DBIRTH")) == 2)


def assert_seq_rule(messages: list[Message]) -> None:
    """Every message but NDEATH has a seq: 0 on NBIRTH, then +1 per message, wrapping after 255."""
    expected = None
    for message in [m for m in messages if not m["type"].endswith("CMD")]:  # commands are the host's
        if message["type"] == "NDEATH":
            assert message["seq"] is None
            continue
        if message["type"] == "NBIRTH":
            expected = 0
        assert message["seq"] == expected, message
        assert message["qos"] == 0 and not message["retain"]
        expected = (expected + 1) % 256


def assert_shows(message: Message, result: dict[str, Any], counters: tuple[int, int, int]) -> None:
    """A DDATA shows the stored result, metric by metric, as the independent host decoded it."""
    got = metrics_of(message)
    assert message["device"] == result["camera"]
    assert got["Inspection/Verdict"] == result["verdict"]
    assert got["Inspection/Part Id"] == result["part_id"]
    assert got["Inspection/Model Version"] == result["model"]
    assert got["Inspection/Result Seq"] == result["seq"] and got["Inspection/Frame Id"] == result["frame_id"]
    assert got["Inspection/Processing Time ms"] == result["latency_ms"]
    assert got["Inspection/Defect Count"] == len(result["defects"])
    table = got["Inspection/Defects"]
    assert table["columns"] == ["Label", "Score", "X1", "Y1", "X2", "Y2"] and table["types"] == [12, 10, 10, 10, 10, 10]
    assert table["rows"] == [[d["label"], d["score"], *d["box"]] for d in result["defects"]]
    captured = next(m for m in message["metrics"] if m["name"] == "Inspection/Captured At")
    assert captured["datatype"] == "DATETIME" and captured["timestamp"] == captured["value"]
    assert (got["Counters/OK"], got["Counters/NG"], got["Counters/Uncertain"]) == counters


def test_births_data_and_death_as_an_independent_host_decodes_them(spb_broker: Broker, host: SparkplugHost,
                                                                   tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    node = make_node(spb_broker, tmp_path, outbox)
    seen = started(node, host)
    nbirth = of_type(seen, "NBIRTH")[0]
    assert nbirth["topic"] == NODE.format(kind="NBIRTH") and nbirth["group"] == "line-7"
    assert {m["name"]: (m["datatype"], m["value"]) for m in nbirth["metrics"]}.items() >= {
        "bdSeq": ("UINT64", 0), "Node Control/Rebirth": ("BOOLEAN", False),
        "Node Info/Software Version": ("STRING", "9.9.9"), "Node Info/Commands Rejected": ("UINT64", 0)}.items()
    dbirths = {m["device"]: m for m in of_type(seen, "DBIRTH")}
    assert sorted(dbirths) == ["cam0", "gate"]
    assert all(m["is_null"] for m in dbirths["cam0"]["metrics"]
               if m["name"].startswith("Inspection/") and m["name"] != "Inspection/Defects")
    assert metrics_of(dbirths["cam0"])["Inspection/Defects"]["rows"] == []  # the table's columns, before any result
    assert "Command/Trigger" not in metrics_of(dbirths["gate"])  # commands are off

    results = store_results(outbox, [("cam0", "fail", ["hole", "stain"]), ("gate", "pass", []),
                                     ("cam0", "uncertain", ["scratch"])], part_id="P-17")
    node.wake()
    seen = host.wait_for(lambda ms: len(of_type(ms, "DDATA")) >= 3)
    data = of_type(seen, "DDATA")
    assert [metrics_of(m)["Inspection/Result Seq"] for m in data] == [1, 2, 3]
    assert_shows(data[0], results[0], (0, 1, 0))
    assert_shows(data[1], results[1], (1, 0, 0))
    assert_shows(data[2], results[2], (0, 1, 1))

    node.stop()
    seen = host.wait_for(lambda ms: bool(of_type(ms, "NDEATH")))
    (ndeath,) = of_type(seen, "NDEATH")
    assert ndeath["qos"] == 1 and metrics_of(ndeath) == {"bdSeq": 0}  # the bdSeq of the NBIRTH it ends
    assert_seq_rule(seen)

    again = make_node(spb_broker, tmp_path, outbox)  # a restart: the next bdSeq, and nothing sent twice
    seen = started(again, host, births_before=1)
    store_results(outbox, [("gate", "fail", ["hole"])])
    again.wake()
    seen = host.wait_for(lambda ms: len(of_type(ms, "DDATA")) >= 4)
    assert metrics_of(of_type(seen, "NBIRTH")[1])["bdSeq"] == 1
    assert result_seqs(seen) == [1, 2, 3, 4]
    again.stop()
    outbox.close()


def test_seq_wraps_from_255_to_0(spb_broker: Broker, host: SparkplugHost, tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    node = make_node(spb_broker, tmp_path, outbox)
    started(node, host)
    store_results(outbox, [("cam0", "pass", [])] * 300)
    node.wake()
    seen = host.wait_for(lambda ms: len(of_type(ms, "DDATA")) >= 300)
    node.stop()
    assert result_seqs(seen) == list(range(1, 301))
    assert [m["seq"] for m in seen[:303]] == [i % 256 for i in range(303)]  # NBIRTH, 2 DBIRTH, 300 DDATA
    assert metrics_of(of_type(seen, "DDATA")[-1])["Counters/OK"] == 300


def test_rebirth_on_ncmd_and_refused_or_malformed_commands_are_counted(spb_broker: Broker, host: SparkplugHost,
                                                                       tmp_path: Path) -> None:
    outbox, triggers = open_outbox(tmp_path), Triggers()
    node = make_node(spb_broker, tmp_path, outbox, triggers)
    started(node, host)
    store_results(outbox, [("gate", "fail", ["hole"])], part_id="P-1")
    node.wake()
    host.wait_for(lambda ms: len(of_type(ms, "DDATA")) == 1)
    host.send({"topic": NODE.format(kind="NCMD"), "ncmd": [["Node Control/Rebirth", "BOOLEAN", True]]})
    seen = host.wait_for(lambda ms: births(ms) == 2 and len(of_type(ms, "DBIRTH")) == 4)
    reborn = of_type(seen, "NBIRTH")[1]
    assert reborn["seq"] == 0 and metrics_of(reborn)["bdSeq"] == 0  # same connection, same bdSeq
    gate = of_type(seen, "DBIRTH", "gate")[-1]
    assert metrics_of(gate)["Inspection/Part Id"] == "P-1" and metrics_of(gate)["Counters/NG"] == 1  # last values

    bad = [{"topic": NODE.format(kind="NCMD"), "raw": b"\xff\x00not protobuf".hex()},
           {"topic": NODE.format(kind="NCMD"), "ncmd": [["Node Control/Rebirth", "BOOLEAN", False]]},
           {"topic": NODE.format(kind="NCMD"), "ncmd": [["Node Control/Reboot", "BOOLEAN", True]]},
           {"topic": NODE.format(kind="DCMD") + "/gate", "dcmd": [["Command/Trigger", "STRING", "P-2"]]},
           {"topic": NODE.format(kind="NCMD"), "ncmd": [["Node Control/Rebirth", "BOOLEAN", True]], "retain": True}]
    for request in bad:
        host.send(request)
    seen = host.wait_for(lambda ms: any(metrics_of(m).get("Node Info/Commands Rejected") == 5
                                        for m in of_type(ms, "NDATA")))
    assert any(metrics_of(m).get("Node Info/Commands Rejected") == 5 for m in of_type(seen, "NDATA")), seen[-3:]
    assert triggers.calls == [] and births(seen) == 2 and node.stats.rejected == 5

    store_results(outbox, [("cam0", "pass", [])])  # still serving
    node.wake()
    seen = host.wait_for(lambda ms: len(of_type(ms, "DDATA")) == 2)
    assert result_seqs(seen) == [1, 2]
    node.stop()
    assert_seq_rule(host.wait_for(lambda ms: bool(of_type(ms, "NDEATH"))))


def test_dcmd_trigger_when_commands_are_allowed(spb_broker: Broker, host: SparkplugHost, tmp_path: Path) -> None:
    outbox, triggers = open_outbox(tmp_path), Triggers("busy")
    node = make_node(spb_broker, tmp_path, outbox, triggers, allow_commands=True)
    seen = started(node, host)
    assert "Command/Trigger" in metrics_of(of_type(seen, "DBIRTH", "gate")[0])
    assert "Command/Trigger" not in metrics_of(of_type(seen, "DBIRTH", "cam0")[0])  # free-run: nothing to trigger
    host.send({"topic": NODE.format(kind="DCMD") + "/gate", "dcmd": [["Command/Trigger", "STRING", "P-9"]]})
    host.send({"topic": NODE.format(kind="DCMD") + "/gate", "dcmd": [["Command/Trigger", "BOOLEAN", True]]})
    host.send({"topic": NODE.format(kind="DCMD") + "/nope", "dcmd": [["Command/Trigger", "STRING", "P-3"]]})
    seen = host.wait_for(lambda ms: any(metrics_of(m).get("Node Info/Commands Rejected") == 2
                                        for m in of_type(ms, "NDATA")))
    answers = [metrics_of(m) for m in of_type(seen, "DDATA", "gate")]
    assert triggers.calls == [("gate", "P-9")]
    assert answers == [{"Command/Trigger": "P-9", "Command/Trigger Answer": "busy"}]
    assert node.stats.rejected == 2
    node.stop()


def test_no_result_is_lost_across_a_dropped_link_and_a_broker_restart(spb_broker: Broker, host: SparkplugHost,
                                                                      tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    node = make_node(spb_broker, tmp_path, outbox)
    started(node, host)
    store_results(outbox, [("cam0", "pass", [])] * 5)
    node.wake()
    host.wait_for(lambda ms: len(result_seqs(ms)) >= 5)

    node.client.socket().shutdown(socket.SHUT_RDWR)  # the link dies without DISCONNECT: the broker sends the will
    store_results(outbox, [("cam0", "fail", ["hole"])] * 5)
    node.wake()
    seen = host.wait_for(lambda ms: births(ms) == 2 and max(result_seqs(ms)) >= 10)
    assert [metrics_of(m)["bdSeq"] for m in of_type(seen, "NDEATH")] == [0]  # the will of session 0
    assert metrics_of(of_type(seen, "NBIRTH")[1])["bdSeq"] == 1
    connects = [line for line in spb_broker.log_path.read_text().splitlines() if "as box-1-sparkplug (" in line]
    assert len(connects) == 2 and all("(p5, c1," in line for line in connects), connects  # a fresh session each time

    spb_broker.kill()
    store_results(outbox, [("gate", "uncertain", ["stain"])] * 5)
    node.wake()
    spb_broker.start()
    seen = host.wait_for(lambda ms: births(ms) == 3 and max(result_seqs(ms)) >= 15, timeout_s=30)
    node.stop()
    assert sorted(set(result_seqs(seen))) == list(range(1, 16)), result_seqs(seen)  # at least once: dupes allowed
    assert metrics_of(of_type(seen, "NBIRTH")[2])["bdSeq"] == 2
    for start in [i for i, m in enumerate(seen) if m["type"] == "NBIRTH"]:
        assert_seq_rule(seen[start:start + 3])


def test_a_camera_offline_is_a_ddeath_and_back_online_a_dbirth(spb_broker: Broker, host: SparkplugHost,
                                                               tmp_path: Path) -> None:
    outbox = open_outbox(tmp_path)
    node = make_node(spb_broker, tmp_path, outbox)
    started(node, host)
    node.camera_status("cam0", "offline")
    seen = host.wait_for(lambda ms: bool(of_type(ms, "DDEATH")))
    assert [(m["device"], m["metrics"]) for m in of_type(seen, "DDEATH")] == [("cam0", [])]
    store_results(outbox, [("cam0", "fail", ["hole"])])  # inspected before the camera went: alive for it alone
    node.wake()
    seen = host.wait_for(lambda ms: len(of_type(ms, "DDEATH")) == 2)
    assert [m["type"] for m in seen[-3:]] == ["DBIRTH", "DDATA", "DDEATH"]
    node.camera_status("cam0", "online")
    seen = host.wait_for(lambda ms: len(of_type(ms, "DBIRTH", "cam0")) == 3)
    assert metrics_of(of_type(seen, "DBIRTH", "cam0")[-1])["Counters/NG"] == 1
    node.stop()
    assert_seq_rule(host.wait_for(lambda ms: bool(of_type(ms, "NDEATH"))))
