"""The Sparkplug tests' broker (Mosquitto queueing QoS 0 for the host's persistent session, so a broker restart loses
the host nothing) and the independent host (tests/fixtures/sparkplug_host.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.sparkplug_host import SparkplugHost, sparkplug_python

__all__ = ["sparkplug_python"]  # a fixture, used through pytest
GROUP = "line-7"


@pytest.fixture
def spb_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = make_broker(tmp_path / "broker", extra_conf="queue_qos0_messages true")
    yield broker
    broker.stop()
    if broker.process and broker.process.stderr:
        broker.process.stderr.close()


@pytest.fixture
def host(sparkplug_python: Path, spb_broker: Broker) -> Iterator[SparkplugHost]:
    probe = SparkplugHost(sparkplug_python, spb_broker, GROUP)
    yield probe
    probe.close()
