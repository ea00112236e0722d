"""The Sparkplug B payload, as a protobuf message class built in code from the specification (Eclipse Sparkplug 3.0,
chapter 6, "Payloads"): no `.proto` file and no generated code is copied in.

Only what the edge node sends and reads is declared: Payload, Metric, DataSet, its Row and DataSetValue. The wire
format carries field numbers and types, never message names, so a message declared here is byte-compatible with
the reference definition; fields we leave out (metadata, properties, templates) survive a parse as unknown fields.
tests/agent/sparkplug/test_host.py decodes what we publish with a Sparkplug implementation we did not write.
"""

from __future__ import annotations

import enum
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "edge_inspect.sparkplug_b"
_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64, "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE,
            "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES}

# message -> (name, number, type, repeated, oneof "value" member); the numbers are the specification's
MESSAGES: dict[str, list[tuple[str, int, str, bool, bool]]] = {
    "Payload": [("timestamp", 1, "uint64", False, False), ("metrics", 2, "Metric", True, False),
                ("seq", 3, "uint64", False, False), ("uuid", 4, "string", False, False),
                ("body", 5, "bytes", False, False)],
    "Metric": [("name", 1, "string", False, False), ("alias", 2, "uint64", False, False),
               ("timestamp", 3, "uint64", False, False), ("datatype", 4, "uint32", False, False),
               ("is_historical", 5, "bool", False, False), ("is_transient", 6, "bool", False, False),
               ("is_null", 7, "bool", False, False), ("int_value", 10, "uint32", False, True),
               ("long_value", 11, "uint64", False, True), ("float_value", 12, "float", False, True),
               ("double_value", 13, "double", False, True), ("boolean_value", 14, "bool", False, True),
               ("string_value", 15, "string", False, True), ("bytes_value", 16, "bytes", False, True),
               ("dataset_value", 17, "DataSet", False, True)],
    "DataSet": [("num_of_columns", 1, "uint64", False, False), ("columns", 2, "string", True, False),
                ("types", 3, "uint32", True, False), ("rows", 4, "Row", True, False)],
    "Row": [("elements", 1, "DataSetValue", True, False)],
    "DataSetValue": [("int_value", 1, "uint32", False, True), ("long_value", 2, "uint64", False, True),
                     ("float_value", 3, "float", False, True), ("double_value", 4, "double", False, True),
                     ("boolean_value", 5, "bool", False, True), ("string_value", 6, "string", False, True)],
}


class DataType(enum.IntEnum):
    """Sparkplug B data types (the specification's numbers) of the metrics and DataSet columns we use."""

    INT32 = 3
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    DATASET = 16


def _field(name: str, number: int, kind: str, repeated: bool, in_oneof: bool) -> Any:
    field = _F(name=name, number=number, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    else:
        field.type, field.type_name = _F.TYPE_MESSAGE, f".{PACKAGE}.{kind}"
    if in_oneof:
        field.oneof_index = 0
    return field


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="edge_inspect_sparkplug_b.proto", package=PACKAGE,
                                              syntax="proto2")
    for name, fields in MESSAGES.items():
        message = file.message_type.add(name=name)
        message.field.extend(_field(*spec) for spec in fields)
        if any(spec[4] for spec in fields):
            message.oneof_decl.add(name="value")
    return file


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()  # our own pool: never clashes with another Sparkplug library's
    pool.AddSerializedFile(_file().SerializeToString())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES}


_CLASSES = _classes()
Payload: Any = _CLASSES["Payload"]
Metric: Any = _CLASSES["Metric"]
DataSet: Any = _CLASSES["DataSet"]
