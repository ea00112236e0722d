"""OPC UA end to end, as a PLC drives a real daemon (`edge-inspect run`, tiny model, a synthetic camera in trigger
mode, a real Mosquitto): Trigger over OPC UA goes through the same handshake as MQTT's `cmd/trigger`, its result
appears as LastResult with the part id, a ResultReadyEvent fires and the counters count it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from asyncua import Client, ua

from tests.fixtures.broker import Broker, Subscriber, free_port
from tests.fixtures.daemon import BASE, DaemonProcess, write_config

pytestmark = pytest.mark.slow

NS = "urn:edge-inspect:machine-vision"
PASSWORD = "plc-password-1"
CAMERA = "VisionSystem.Cameras.gate"


class Events:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.events.append(event)


async def wait_until(check: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.1)
    return bool(await check())


async def connect(endpoint: str, timeout_s: float) -> Client:
    """The daemon loads its model first: retry until its OPC UA server answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        client = Client(endpoint, timeout=10)
        client.set_user("plc")
        client.set_password(PASSWORD)
        try:
            await client.connect()
            return client
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def drive_line(endpoint: str) -> dict[str, Any]:
    client = await connect(endpoint, 120)
    try:
        idx = await client.get_namespace_index(NS)

        def node(path: str) -> Any:
            return client.get_node(ua.NodeId.from_string(f"ns={idx};s={path}"))

        async def counts() -> list[int]:
            return [await node(f"{CAMERA}.Counters.{k}").read_value() for k in ("Ok", "Ng", "Uncertain")]

        assert await wait_until(lambda: node(f"{CAMERA}.Ready").read_value(), 60), "camera never ready"
        events = Events()
        sub = await client.create_subscription(50, events)
        etype = await client.nodes.base_event_type.get_child(f"{idx}:ResultReadyEventType")
        await sub.subscribe_events(node("VisionSystem"), etype)
        before = await counts()
        reply = await node("VisionSystem").call_method(node("VisionSystem.Trigger"), ua.Variant("gate"),
                                                       ua.Variant("P-OPC-1"), ua.Variant(""))

        async def seen() -> bool:
            return any(e.PartId == "P-OPC-1" for e in events.events)

        assert await wait_until(seen, 60), "no ResultReadyEvent for the part"
        last = {k: await node(f"{CAMERA}.LastResult.{k}").read_value() for k in ("ResultId", "PartId", "Verdict")}
        return {"reply": reply, "events": events.events, "last": last, "before": before, "after": await counts(),
                "state": await node("VisionSystem.SystemState").read_value()}
    finally:
        await client.disconnect()


def test_a_plc_triggers_over_opc_ua_and_reads_the_result(tmp_path: Path, tiny_model_dir: Path,
                                                         mosquitto: Broker) -> None:
    port = free_port()
    cameras = [{"name": "gate", "source": "synthetic:seed=3,size=128", "fps": 4, "mode": "trigger"}]
    opcua = {"enabled": True, "port": port, "security_policies": ["None"],
             "users": [{"name": "plc", "password_hash": PasswordHasher().hash(PASSWORD)}]}
    config = write_config(tmp_path, tiny_model_dir, mosquitto, cameras, opcua=opcua)
    results = Subscriber(mosquitto, f"{BASE}/cameras/gate/result", client_id="line-results")
    state = Subscriber(mosquitto, f"{BASE}/cameras/gate/handshake", client_id="line-state")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        seen = asyncio.run(drive_line(f"opc.tcp://127.0.0.1:{port}/edge-inspect/"))
        published = results.wait_for(lambda p: any(r["part_id"] == "P-OPC-1" for r in p), 30)
        handshake = state.wait_for(lambda p: bool(p) and p[-1]["counters"]["results"] >= 1, 30)
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        results.close()
        state.close()
        daemon.ensure_dead()
    assert seen["reply"] == ["accepted", 1, ""], seen["reply"]
    assert seen["state"] == "Operational"
    (event,) = [e for e in seen["events"] if e.PartId == "P-OPC-1"]
    (result,) = [r for r in published if r["part_id"] == "P-OPC-1"]
    assert seen["last"] == {"ResultId": str(result["seq"]), "PartId": "P-OPC-1", "Verdict": result["verdict"]}
    assert (event.ResultId, event.Verdict, event.CameraName) == (str(result["seq"]), result["verdict"], "gate")
    assert sum(seen["after"]) - sum(seen["before"]) == 1, (seen["before"], seen["after"])
    log = daemon.log.read_text()
    assert PASSWORD not in log
    assert not [r for r in daemon.log_records() if r.get("logger", "").startswith("asyncua") and r["level"] == "info"]
    counters = handshake[-1]["counters"]
    assert counters["accepted"] == 1 and handshake[-1]["last_part_id"] == "P-OPC-1", counters  # MQTT's handshake
