"""The OPC UA server against asyncua's client, as a PLC or SCADA connects: logins, the address space, results and
their event, counters, and Trigger calls (here with a stand-in for the handshake; the daemon test drives the real
one)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from argon2 import PasswordHasher
from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError

from agent.capture.triggers import HandshakeState
from agent.config.opcua import OpcUaConfig
from agent.control.commands import CommandError, TriggerCommand
from agent.opcua.server import OpcUaServer
from agent.opcua.space import ResultView
from tests.fixtures.broker import free_port

NS = "urn:edge-inspect:test"
PASSWORD = "line-1-plc-password"
HASH = PasswordHasher().hash(PASSWORD)
TIMEOUT_S = 10.0


class FakeLine:
    """Answers triggers like agent/handshake.py:Handshake.trigger: gate accepts, cam0 is free-run."""

    def __init__(self) -> None:
        self.commands: list[TriggerCommand] = []

    def trigger(self, cmd: TriggerCommand) -> dict[str, Any]:
        self.commands.append(cmd)
        if cmd.camera == "cam0":
            raise CommandError("camera: 'cam0' runs in 'free-run' mode, not 'trigger'")
        if cmd.camera != "gate":
            raise CommandError(f"camera: unknown camera {cmd.camera!r}; cameras: ['cam0', 'gate']")
        if cmd.part_id == "BUSY":
            raise CommandError("busy: camera 'gate' is still acquiring part 'P-0'; nothing captured, retry",
                               status="busy", camera="gate", part_id="BUSY")
        return {"status": "accepted", "camera": "gate", "part_id": cmd.part_id, "position": 1, "capacity": 4}


def start_server(line: FakeLine, **config: Any) -> OpcUaServer:
    settings = {"enabled": True, "port": free_port(), "namespace_uri": NS, "security_policies": ["None"],
                "users": [{"name": "plc", "password_hash": HASH}], **config}
    server = OpcUaServer(OpcUaConfig.model_validate(settings), "line1", {"gate": "trigger", "cam0": "free-run"},
                         line.trigger, lambda job: f"tiny+{job}", lambda: ["v0001", "v0002"])
    server.start()
    return server


@pytest.fixture(scope="module")
def line() -> FakeLine:
    return FakeLine()


@pytest.fixture(scope="module")
def server(line: FakeLine) -> Iterator[OpcUaServer]:
    server = start_server(line)
    yield server
    server.stop()


def client_of(server: OpcUaServer, user: str | None = "plc", password: str = PASSWORD) -> Client:
    client = Client(server.endpoint, timeout=TIMEOUT_S)
    if user is not None:
        client.set_user(user)
        client.set_password(password)
    return client


async def node(client: Client, path: str) -> Any:
    idx = await client.get_namespace_index(NS)
    return client.get_node(ua.NodeId(path, idx))


async def read(client: Client, path: str) -> Any:
    return await (await node(client, path)).read_value()


def test_anonymous_clients_are_refused_by_default(server: OpcUaServer) -> None:
    async def connect() -> None:
        async with client_of(server, user=None):
            pass

    with pytest.raises(UaStatusCodeError, match="BadIdentityTokenRejected"):
        asyncio.run(connect())


def test_a_wrong_password_is_refused(server: OpcUaServer) -> None:
    async def connect() -> None:
        async with client_of(server, password="not-the-password"):
            pass

    with pytest.raises(UaStatusCodeError, match="BadUserAccessDenied"):
        asyncio.run(connect())


def test_a_configured_user_logs_in_and_browses_the_vision_system(server: OpcUaServer) -> None:
    async def browse() -> tuple[str, list[str], list[str], list[str]]:
        async with client_of(server) as client:
            cams = await (await node(client, "VisionSystem.Cameras")).get_children()
            last = await (await node(client, "VisionSystem.Cameras.gate.LastResult")).get_children()
            names = sorted([(await c.read_browse_name()).Name for c in cams])
            fields = sorted([(await c.read_browse_name()).Name for c in last])
            return await read(client, "VisionSystem.SystemState"), names, fields, await read(client,
                                                                                             "VisionSystem.Jobs")

    state, cameras, fields, jobs = asyncio.run(browse())
    assert state == "Operational"
    assert cameras == ["cam0", "gate"]
    assert fields == ["Defects", "PartId", "ProcessingTimeMs", "ResultId", "Timestamp", "Verdict"]
    assert jobs == ["v0001", "v0002"]


def test_the_handshake_state_reaches_the_camera_nodes(server: OpcUaServer) -> None:
    state = HandshakeState("gate", ready=False, busy=True, acquiring=True, results_pending=2, capacity=4,
                           last_part_id="P-7")
    server.update_state(state)

    async def wait_for_state() -> tuple[Any, ...]:
        async with client_of(server) as client:
            for _ in range(100):
                values = tuple([await read(client, f"VisionSystem.Cameras.gate.{k}")
                                for k in ("Ready", "Busy", "ResultsPending", "LastPartId")])
                if values[3] == "P-7":
                    return values
                await asyncio.sleep(0.05)
            return values

    assert asyncio.run(wait_for_state()) == (False, True, 2, "P-7")


class EventCollector:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.events.append(event)


def result(part_id: str, verdict: str, seq: int) -> ResultView:
    return ResultView("gate", str(seq), part_id, verdict, '[{"label": "hole", "score": 0.9}]', 12.5,
                      datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc))


def test_a_result_updates_last_result_and_counters_and_fires_result_ready(server: OpcUaServer) -> None:
    async def watch() -> tuple[list[Any], dict[str, Any], list[int], list[int]]:
        async with client_of(server) as client:
            counters = [f"VisionSystem.Cameras.gate.Counters.{k}" for k in ("Ok", "Ng", "Uncertain")]
            before = [await read(client, c) for c in counters]
            idx = await client.get_namespace_index(NS)
            collector = EventCollector()
            sub = await client.create_subscription(50, collector)
            etype = await client.nodes.base_event_type.get_child(f"{idx}:ResultReadyEventType")
            await sub.subscribe_events(await node(client, "VisionSystem"), etype)
            server.add_result(result("P-1", "fail", 41))
            server.add_result(result("P-2", "pass", 42))
            for _ in range(200):
                if len(collector.events) >= 2:
                    break
                await asyncio.sleep(0.05)
            last = {k: await read(client, f"VisionSystem.Cameras.gate.LastResult.{k}")
                    for k in ("ResultId", "PartId", "Verdict", "Defects", "ProcessingTimeMs", "Timestamp")}
            after = [await read(client, c) for c in counters]
            await sub.delete()
            return collector.events, last, before, after

    events, last, before, after = asyncio.run(watch())
    assert [(e.PartId, e.Verdict, e.ResultId, e.CameraName) for e in events] == [
        ("P-1", "fail", "41", "gate"), ("P-2", "pass", "42", "gate")]
    assert last["ResultId"] == "42" and last["PartId"] == "P-2" and last["Verdict"] == "pass"
    assert last["Defects"] == '[{"label": "hole", "score": 0.9}]' and last["ProcessingTimeMs"] == 12.5
    assert last["Timestamp"].replace(tzinfo=timezone.utc) == datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
    assert [a - b for a, b in zip(after, before)] == [1, 1, 0]


async def call_trigger(client: Client, *args: str) -> ua.CallMethodResult:
    """The raw Call service, as a PLC's method-call block sees it (status, per-argument results, outputs)."""
    request = ua.CallMethodRequest()
    request.ObjectId = (await node(client, "VisionSystem")).nodeid
    request.MethodId = (await node(client, "VisionSystem.Trigger")).nodeid
    request.InputArguments = [ua.Variant(a, ua.VariantType.String) for a in args]
    (answer,) = await client.uaclient.call([request])
    return answer


def test_trigger_answers_as_the_mqtt_trigger_reply(server: OpcUaServer, line: FakeLine) -> None:
    async def calls() -> tuple[list[Any], list[Any]]:
        async with client_of(server) as client:
            vision = await node(client, "VisionSystem")
            method = await node(client, "VisionSystem.Trigger")
            accepted = await vision.call_method(method, ua.Variant("gate"), ua.Variant("P-9"), ua.Variant("fail"))
            busy = await vision.call_method(method, ua.Variant("gate"), ua.Variant("BUSY"))
            return accepted, busy

    accepted, busy = asyncio.run(calls())
    assert accepted == ["accepted", 1, ""]
    assert busy[:2] == ["busy", 0] and "still acquiring" in busy[2]
    assert (line.commands[-2].part_id, line.commands[-2].expect) == ("P-9", "fail")


@pytest.mark.parametrize(("args", "status", "bad_argument", "says"), [
    (("nowhere", "P-1"), "BadInvalidArgument", 0, "unknown camera 'nowhere'"),
    (("cam0", "P-1"), "BadInvalidArgument", 0, "free-run"),
    (("gate", ""), "BadInvalidArgument", 1, "PartId is empty"),
    (("gate", "P-1", "maybe"), "BadInvalidArgument", 2, "expect"),
    (("gate",), "BadArgumentsMissing", None, "got 1 arguments"),
])
def test_a_malformed_trigger_returns_a_bad_status_naming_the_problem(
        server: OpcUaServer, line: FakeLine, args: tuple[str, ...], status: str, bad_argument: int | None,
        says: str) -> None:
    async def call() -> ua.CallMethodResult:
        async with client_of(server) as client:
            return await call_trigger(client, *args)

    before = [c.part_id for c in line.commands]
    answer = asyncio.run(call())
    assert answer.StatusCode.name == status
    marked = [i for i, r in enumerate(answer.InputArgumentResults) if not r.is_good()]
    assert marked == ([] if bad_argument is None else [bad_argument])
    assert says in answer.OutputArguments[-1].Value
    accepted_now = [c.part_id for c in line.commands][len(before):]
    assert all(c != "P-1" or args[0] in ("nowhere", "cam0") for c in accepted_now)


def test_anonymous_access_works_only_when_allowed(line: FakeLine) -> None:
    server = start_server(line, allow_anonymous=True, users=[])
    try:
        async def read_state() -> Any:
            async with client_of(server, user=None) as client:
                return await read(client, "VisionSystem.SystemState")

        assert asyncio.run(read_state()) == "Operational"
    finally:
        server.stop()


def test_select_job_serves_the_job_and_shows_it(server: OpcUaServer) -> None:
    async def select() -> tuple[Any, Any, ua.CallMethodResult]:
        async with client_of(server) as client:
            vision = await node(client, "VisionSystem")
            method = await node(client, "VisionSystem.SelectJob")
            served = await vision.call_method(method, ua.Variant("v0002"))
            job = await read(client, "VisionSystem.Job")
            request = ua.CallMethodRequest()
            request.ObjectId, request.MethodId = vision.nodeid, method.nodeid
            request.InputArguments = [ua.Variant("", ua.VariantType.String)]
            (empty,) = await client.uaclient.call([request])
            return served, job, empty

    served, job, empty = asyncio.run(select())
    assert served == "tiny+v0002" and job == "tiny+v0002"
    assert empty.StatusCode.name == "BadInvalidArgument" and "non-empty" in empty.OutputArguments[-1].Value
