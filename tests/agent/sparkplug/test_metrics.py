"""Payloads built from a stored result, read back with our own message classes (the independent decoding is
tests/agent/sparkplug/test_node.py)."""

from __future__ import annotations

from pathlib import Path

from agent.sparkplug import metrics, proto
from tests.agent.sparkplug.helpers import open_outbox, store_results


def test_a_result_becomes_typed_metrics_stamped_with_its_capture_time(tmp_path: Path) -> None:
    (result,) = store_results(open_outbox(tmp_path), [("cam0", "fail", ["hole", "stain"])], part_id="P-3")
    captured = metrics.rfc3339_ms(result["captured_at"])
    raw = metrics.payload(metrics.result_values(result), seq=7, metric_time=captured)
    message = proto.Payload.FromString(raw)
    assert message.seq == 7 and message.timestamp >= captured
    by_name = {m.name: m for m in message.metrics}
    assert all(m.timestamp == captured for m in message.metrics)
    assert by_name["Inspection/Verdict"].string_value == "fail"
    assert by_name["Inspection/Defect Count"].int_value == 2
    assert by_name["Inspection/Image URL"].is_null  # this result has none
    table = by_name["Inspection/Defects"].dataset_value
    assert table.num_of_columns == 6 and [r.elements[0].string_value for r in table.rows] == ["hole", "stain"]
    assert metrics.result_seq(raw) == result["seq"]
    assert metrics.result_seq(b"\xff garbage") is None


def test_births_declare_every_metric_with_its_type_even_without_a_value() -> None:
    message = proto.Payload.FromString(metrics.payload(metrics.result_values(None), seq=1))
    assert all(m.datatype for m in message.metrics)
    assert {m.name for m in message.metrics if m.is_null} == set(metrics.INSPECTION) - {"Inspection/Defects"}
    table = next(m for m in message.metrics if m.name == "Inspection/Defects").dataset_value
    assert list(table.columns) == ["Label", "Score", "X1", "Y1", "X2", "Y2"] and not table.rows
    death = proto.Payload.FromString(metrics.node_death(42))
    assert not death.HasField("seq") and [(m.name, m.datatype, m.long_value) for m in death.metrics] == [
        ("bdSeq", proto.DataType.UINT64, 42)]
