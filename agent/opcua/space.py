"""The address space: a reduced OPC 40100 Machine Vision model, with stable string node ids in our namespace.

    Objects/VisionSystem                              ns=<idx>;s=VisionSystem
        SystemState, Job, Jobs                        s=VisionSystem.SystemState, ...
        Trigger(Camera, PartId, Expect), SelectJob(Job)   methods
        Cameras/<name>/{Mode, Ready, Busy, ResultsPending, LastPartId}
        Cameras/<name>/LastResult/{ResultId, PartId, Verdict, Defects, ProcessingTimeMs, Timestamp}
        Cameras/<name>/Counters/{Ok, Ng, Uncertain}
    ResultReadyEventType (under BaseEventType), emitted by VisionSystem

Every write happens on the server's event loop (agent/opcua/server.py hands updates over to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.event_objects import BaseEvent
from asyncua.server.event_generator import EventGenerator

from agent.capture.triggers import HandshakeState

VERDICT_COUNTERS = {"pass": "Ok", "fail": "Ng", "uncertain": "Uncertain"}
Field = tuple[str, Any, ua.VariantType]  # browse name, initial value, type
HANDSHAKE_FIELDS: list[Field] = [
    ("Ready", False, ua.VariantType.Boolean), ("Busy", False, ua.VariantType.Boolean),
    ("ResultsPending", 0, ua.VariantType.UInt32), ("LastPartId", "", ua.VariantType.String)]
LAST_RESULT_FIELDS: list[Field] = [
    ("ResultId", "", ua.VariantType.String), ("PartId", "", ua.VariantType.String),
    ("Verdict", "", ua.VariantType.String), ("Defects", "[]", ua.VariantType.String),
    ("ProcessingTimeMs", 0.0, ua.VariantType.Double), ("Timestamp", datetime(1601, 1, 1), ua.VariantType.DateTime)]
EVENT_FIELDS = [("CameraName", ua.VariantType.String), ("ResultId", ua.VariantType.String),
                ("PartId", ua.VariantType.String), ("Verdict", ua.VariantType.String),
                ("ProcessingTimeMs", ua.VariantType.Double), ("Defects", ua.VariantType.String)]


@dataclass(frozen=True)
class ResultView:
    """One stored result as the OPC UA server shows it (built on the results thread, applied on the loop)."""

    camera: str
    result_id: str  # the result's outbox seq: the same number as in its MQTT message
    part_id: str  # '' for an untriggered frame
    verdict: str
    defects: str  # JSON: [{"label", "score", "box", "box_norm"}], as in the MQTT result
    processing_ms: float
    captured_at: datetime


@dataclass
class CameraNodes:
    variables: dict[str, Node]  # by browse path below the camera: "Ready", "LastResult.PartId", "Counters.Ok"
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICT_COUNTERS.values(), 0))


@dataclass
class Space:
    idx: int
    root: Node
    state: Node
    job: Node
    jobs: Node
    cameras: dict[str, CameraNodes]
    result_ready: EventGenerator


async def build_space(server: Server, namespace_uri: str, cameras: dict[str, str]) -> Space:
    """Create the nodes for `cameras` (name -> mode); methods are added by the server (agent/opcua/server.py)."""
    idx = await server.register_namespace(namespace_uri)
    root = await server.nodes.objects.add_object(_id(idx, "VisionSystem"), ua.QualifiedName("VisionSystem", idx))
    state = await _variable(root, idx, "VisionSystem", "SystemState", "Preoperational", ua.VariantType.String)
    job = await _variable(root, idx, "VisionSystem", "Job", "", ua.VariantType.String)
    jobs = await _variable(root, idx, "VisionSystem", "Jobs", [], ua.VariantType.String)
    folder = await root.add_folder(_id(idx, "VisionSystem.Cameras"), ua.QualifiedName("Cameras", idx))
    nodes = {name: await _camera(folder, idx, name, mode) for name, mode in cameras.items()}
    etype = await server.create_custom_event_type(idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType,
                                                  list(EVENT_FIELDS))
    generator = await server.get_event_generator(etype, root.nodeid)
    return Space(idx, root, state, job, jobs, nodes, generator)


async def _camera(folder: Node, idx: int, name: str, mode: str) -> CameraNodes:
    base = f"VisionSystem.Cameras.{name}"
    cam = await folder.add_object(_id(idx, base), ua.QualifiedName(name, idx))
    variables = {"Mode": await _variable(cam, idx, base, "Mode", mode, ua.VariantType.String)}
    for key, value, vtype in HANDSHAKE_FIELDS:
        variables[key] = await _variable(cam, idx, base, key, value, vtype)
    last = await cam.add_object(_id(idx, f"{base}.LastResult"), ua.QualifiedName("LastResult", idx))
    for key, value, vtype in LAST_RESULT_FIELDS:
        variables[f"LastResult.{key}"] = await _variable(last, idx, f"{base}.LastResult", key, value, vtype)
    counters = await cam.add_object(_id(idx, f"{base}.Counters"), ua.QualifiedName("Counters", idx))
    for key in VERDICT_COUNTERS.values():
        variables[f"Counters.{key}"] = await _variable(counters, idx, f"{base}.Counters", key, 0, ua.VariantType.UInt64)
    return CameraNodes(variables)


async def _variable(parent: Node, idx: int, base: str, name: str, value: Any, vtype: ua.VariantType) -> Node:
    """A read-only variable `base.name` (clients change things only through the methods)."""
    return await parent.add_variable(_id(idx, f"{base}.{name}"), ua.QualifiedName(name, idx), value, vtype)


def _id(idx: int, path: str) -> ua.NodeId:
    return ua.NodeId.from_string(f"ns={idx};s={path}")


async def apply_state(space: Space, state: HandshakeState) -> None:
    nodes = space.cameras.get(state.camera)
    if nodes is None:
        return
    await _write(nodes, "Ready", state.ready, ua.VariantType.Boolean)
    await _write(nodes, "Busy", state.busy, ua.VariantType.Boolean)
    await _write(nodes, "ResultsPending", state.results_pending, ua.VariantType.UInt32)
    await _write(nodes, "LastPartId", state.last_part_id or "", ua.VariantType.String)


async def apply_result(space: Space, result: ResultView) -> None:
    """LastResult and the counters first, then the event: a client woken by the event reads this result."""
    nodes = space.cameras.get(result.camera)
    if nodes is None:
        return
    values = (result.result_id, result.part_id, result.verdict, result.defects, result.processing_ms,
              result.captured_at)
    for (key, _initial, vtype), value in zip(LAST_RESULT_FIELDS, values, strict=True):
        await _write(nodes, f"LastResult.{key}", value, vtype)
    counter = VERDICT_COUNTERS.get(result.verdict)
    if counter is not None:
        nodes.counts[counter] += 1
        await _write(nodes, f"Counters.{counter}", nodes.counts[counter], ua.VariantType.UInt64)
    await _fire_result_ready(space.result_ready, result)


async def _fire_result_ready(generator: EventGenerator, result: ResultView) -> None:
    event: BaseEvent = generator.event
    values = (result.camera, result.result_id, result.part_id, result.verdict, result.processing_ms, result.defects)
    for (name, _vtype), value in zip(EVENT_FIELDS, values, strict=True):
        setattr(event, name, value)
    await generator.trigger(message=f"{result.camera}: result {result.result_id} {result.verdict}"
                            + (f" for part {result.part_id}" if result.part_id else ""))


async def _write(nodes: CameraNodes, key: str, value: Any, vtype: ua.VariantType) -> None:
    await nodes.variables[key].write_value(ua.Variant(value, vtype))
