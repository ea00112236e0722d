"""Fixtures for the fault tests: the persistent result subscriber a PLC gateway would run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE


@pytest.fixture
def results(mosquitto: Broker) -> Iterator[Subscriber]:
    """Persistent QoS 1 subscriber to every camera's results; survives broker restarts with its session."""
    sub = Subscriber(mosquitto, f"{BASE}/cameras/+/result", client_id=f"plc-{uuid.uuid4().hex[:6]}")
    yield sub
    sub.close()
