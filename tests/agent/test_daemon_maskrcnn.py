"""The daemon serving a `maskrcnn` model directory, unchanged: `edge-inspect run` with `model.path` = the fine-tuned
tiny Mask R-CNN, a synthetic camera, a real Mosquitto; results carry `area_px` and outline polygons and stay
schema-valid, and queued frames keep their masks."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import jsonschema
import pytest

from agent.detections import Detections
from agent.publish.result import result_schema
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DaemonProcess, write_config
from tests.fixtures.maskrcnn import TrainedMaskRcnn

pytestmark = pytest.mark.slow


def test_the_daemon_publishes_defects_with_masks(trained_maskrcnn: TrainedMaskRcnn, mosquitto: Broker,
                                                 tmp_path: Path) -> None:
    config = write_config(tmp_path, trained_maskrcnn.model, mosquitto,
                          cameras=[{"name": "cam0", "source": "synthetic:seed=4,size=128", "fps": 4}],
                          model={"default_threshold": 0.3},
                          queue={"per_minute": 1000, "samplers": ["random"], "random_rate": 1.0})
    results = Subscriber(mosquitto, f"{BASE}/cameras/+/result", client_id=f"plc-{uuid.uuid4().hex[:6]}")
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env={"OMP_NUM_THREADS": "1"})
    try:
        payloads = results.wait_for(lambda p: sum(bool(x["defects"]) for x in p) >= 3, timeout_s=180)
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        results.close()
        if daemon.proc.poll() is None:
            daemon.kill()
    masked = [d for p in payloads for d in p["defects"]]
    assert len(masked) >= 3, daemon.log_tail()
    for payload in payloads:
        jsonschema.validate(payload, result_schema())
    assert all(d["area_px"] > 0 and d["polygons"] and len(d["polygons"][0]) >= 3 for d in masked)
    with sqlite3.connect(tmp_path / "state" / "queue" / "index.sqlite3") as db:
        rows = [Detections.deserialize(text) for (text,) in db.execute("SELECT detections FROM entries")]
    assert rows and all(r.mask is not None for r in rows if len(r))
