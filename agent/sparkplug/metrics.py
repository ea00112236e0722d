"""The edge node's metrics, as data, and the payloads built from them (docs/integration.md, "Sparkplug B").

Node: bdSeq, `Node Control/Rebirth`, `Node Info/*`. Device (one per camera): the last result's `Inspection/*`
metrics, `Counters/*` by verdict, and with `sparkplug.allow_commands` a trigger-mode camera's `Command/*`.
A result's metrics come from its stored JSON (`edge-inspect.result/1`), so Sparkplug and MQTT tell the same story.

The defect list is a DataSet (Label, Score, X1, Y1, X2, Y2): a Sparkplug host such as Ignition turns it into a
typed table tag without a script, and its columns are declared in the DBIRTH; `Inspection/Defect Count` beside it
serves hosts that do not handle DataSets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf.message import DecodeError

from agent.sparkplug import proto
from agent.sparkplug.proto import DataType

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
COMMANDS_REJECTED = "Node Info/Commands Rejected"
RESULTS_SKIPPED = "Node Info/Results Skipped"
RESULT_SEQ = "Inspection/Result Seq"
TRIGGER = "Command/Trigger"
TRIGGER_ANSWER = "Command/Trigger Answer"
COUNTERS = {"pass": "Counters/OK", "fail": "Counters/NG", "uncertain": "Counters/Uncertain"}
DEFECT_COLUMNS = (("Label", DataType.STRING), ("Score", DataType.DOUBLE), ("X1", DataType.DOUBLE),
                  ("Y1", DataType.DOUBLE), ("X2", DataType.DOUBLE), ("Y2", DataType.DOUBLE))
# device metric -> (data type, the result field it shows)
INSPECTION = {
    "Inspection/Verdict": (DataType.STRING, "verdict"),
    "Inspection/Defects": (DataType.DATASET, "defects"),
    "Inspection/Defect Count": (DataType.UINT32, "defects"),
    "Inspection/Part Id": (DataType.STRING, "part_id"),
    "Inspection/Processing Time ms": (DataType.DOUBLE, "latency_ms"),
    "Inspection/Model Version": (DataType.STRING, "model"),
    RESULT_SEQ: (DataType.UINT64, "seq"),
    "Inspection/Frame Id": (DataType.UINT64, "frame_id"),
    "Inspection/Captured At": (DataType.DATETIME, "captured_at"),
    "Inspection/Image URL": (DataType.STRING, "image_url"),
}
_VALUE_FIELD = {DataType.INT32: "int_value", DataType.UINT32: "int_value", DataType.UINT64: "long_value",
                DataType.FLOAT: "float_value", DataType.DOUBLE: "double_value", DataType.BOOLEAN: "boolean_value",
                DataType.STRING: "string_value", DataType.DATETIME: "long_value"}

Value = tuple[str, DataType, Any]  # (metric name, data type, value or None)


@dataclass(frozen=True)
class NodeInfo:
    """What the NBIRTH tells about the box besides bdSeq."""

    version: str  # the daemon's software version
    device_id: str


def now_ms() -> int:
    return int(time.time() * 1000)


def payload(values: Iterable[Value], seq: int | None, timestamp: int | None = None,
            metric_time: int | None = None) -> bytes:
    """A Sparkplug B payload; `metric_time` stamps every metric (default: the payload's `timestamp`, now)."""
    message = proto.Payload(timestamp=timestamp if timestamp is not None else now_ms())
    if seq is not None:
        message.seq = seq
    for name, datatype, value in values:
        metric = message.metrics.add(name=name, datatype=datatype, timestamp=metric_time or message.timestamp)
        _set_value(metric, datatype, value)
    return bytes(message.SerializeToString())


def _set_value(metric: Any, datatype: DataType, value: Any) -> None:
    if value is None:
        metric.is_null = True
    elif datatype is DataType.DATASET:
        _fill_defects(metric.dataset_value, value)
    else:
        setattr(metric, _VALUE_FIELD[datatype], value)


def _fill_defects(dataset: Any, defects: list[dict[str, Any]]) -> None:
    dataset.num_of_columns = len(DEFECT_COLUMNS)
    dataset.columns.extend(name for name, _ in DEFECT_COLUMNS)
    dataset.types.extend(datatype for _, datatype in DEFECT_COLUMNS)
    for defect in defects:
        row = dataset.rows.add()
        row.elements.add(string_value=str(defect["label"]))
        row.elements.add(double_value=float(defect["score"]))
        for coordinate in defect["box"]:
            row.elements.add(double_value=float(coordinate))


def node_birth(bdseq: int, info: NodeInfo, rejected: int, skipped: int) -> list[Value]:
    return [(BDSEQ, DataType.UINT64, bdseq), (REBIRTH, DataType.BOOLEAN, False),
            ("Node Info/Software Version", DataType.STRING, info.version),
            ("Node Info/Device Id", DataType.STRING, info.device_id), *node_counters(rejected, skipped)]


def node_counters(rejected: int, skipped: int) -> list[Value]:
    """Commands the node refused and results it could not send (pruned from the outbox first), since start."""
    return [(COMMANDS_REJECTED, DataType.UINT64, rejected), (RESULTS_SKIPPED, DataType.UINT64, skipped)]


def node_death(bdseq: int) -> bytes:
    """The NDEATH (the MQTT will): bdSeq only, no seq."""
    return payload([(BDSEQ, DataType.UINT64, bdseq)], seq=None)


def result_values(result: Mapping[str, Any] | None) -> list[Value]:
    """A result's `Inspection/*` metrics (before the camera's first result: null, the defects an empty table)."""
    values: list[Value] = []
    for name, (datatype, key) in INSPECTION.items():
        value = None if result is None else result.get(key)
        if datatype is DataType.DATASET:
            value = value or []  # never null: a host creates the table tag with its columns from the DBIRTH
        elif value is not None and name == "Inspection/Defect Count":
            value = len(value)
        elif value is not None and datatype is DataType.DATETIME:
            value = rfc3339_ms(value)
        values.append((name, datatype, value))
    return values


def counter_values(counts: Mapping[str, int]) -> list[Value]:
    return [(name, DataType.UINT64, counts.get(verdict, 0)) for verdict, name in COUNTERS.items()]


def trigger_values(part_id: str | None, answer: str) -> list[Value]:
    return [(TRIGGER, DataType.STRING, part_id or ""), (TRIGGER_ANSWER, DataType.STRING, answer)]


def rfc3339_ms(text: str) -> int:
    """Milliseconds since the epoch of a result's `captured_at` (RFC 3339, 'Z')."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def result_seq(raw: bytes) -> int | None:
    """The `Inspection/Result Seq` of a DDATA we published (None when it carries none or is not ours)."""
    try:
        message = proto.Payload.FromString(raw)
    except DecodeError:  # anyone may publish on a DDATA topic: never trust it
        return None
    for metric in message.metrics:
        if metric.name == RESULT_SEQ and metric.WhichOneof("value") == "long_value":
            return int(metric.long_value)
    return None
