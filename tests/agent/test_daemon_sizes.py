"""Sizes in mm end to end: the real daemon (a scripted detector instead of a model) with a camera geometry file in
its state dir and a size rule, a real Mosquitto. Boxes carry their size; a scratch shorter than its rule passes the
part and is published as undersized; a reload applies a new rule without a model load."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
import yaml

from agent.config import load_settings
from agent.daemon import Daemon
from agent.detections import Detections
from agent.geometry import write_geometry
from agent.publish.result import result_schema
from tests.agent.test_daemon_pictures import subscribed, wait_for_results
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import daemon_config
from tests.fixtures.geometry import flat_geometry

CLASSES = ("scratch", "hole", "stain")
SIZE = (160, 120)
LONG = (10.0, 10.0, 50.0, 14.0)  # 40 x 4 px: 4.0 x 0.4 mm at 0.1 mm/px
SHORT = (80.0, 60.0, 90.0, 64.0)  # 10 x 4 px: 1.0 x 0.4 mm


class ScriptedDetector:
    """A confident scratch on every frame, long and short in turn."""

    version = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        out = []
        for _image in images:
            self.calls += 1
            box = LONG if self.calls % 2 else SHORT
            out.append(Detections.from_labels(["scratch"], [box], CLASSES, SIZE, score=[0.9]))
        return out


@pytest.fixture
def running(tmp_path: Path, mosquitto: Broker) -> Iterator[tuple[Daemon, Path, dict[str, Any], Subscriber]]:
    (tmp_path / "model").mkdir()
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((SIZE[1], SIZE[0], 3), 128, np.uint8))
    config = daemon_config(tmp_path, tmp_path / "model", mosquitto,
                           cameras=[{"name": "cam0", "source": str(tmp_path / "grey.png"), "fps": 8}])
    config["station"] = {"enabled": False}
    config["model"]["size_rules"] = {"scratch": {"min_length_mm": 2.0}}
    write_geometry(tmp_path / "state" / "geometry" / "cam0.json", flat_geometry(0.1, SIZE))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    sub = subscribed(mosquitto)
    daemon = Daemon(load_settings(path), path, detector_factory=lambda _s, _c: ScriptedDetector())
    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        yield daemon, path, config, sub
    finally:
        daemon.stop()
        thread.join(60)
        sub.close()


def test_results_carry_sizes_and_a_short_scratch_is_undersized_until_a_reload_lowers_the_rule(running) -> None:
    daemon, path, config, sub = running
    payloads = wait_for_results(sub, 6)
    for payload in payloads:
        jsonschema.validate(payload, result_schema())
    fails = [p for p in payloads if p["verdict"] == "fail"]
    passes = [p for p in payloads if p["verdict"] == "pass"]
    assert fails and passes and len(fails) + len(passes) == 6
    assert all(p["defects"] == [{"label": "scratch", "score": 0.9, "box": list(LONG),
                                 "box_norm": [0.0625, 0.0833, 0.3125, 0.1167], "size_mm": [4.0, 0.4],
                                 "area_mm2": 1.6}] for p in fails)
    assert all(p["defects"] == [] and p["undersized_boxes"] == [
        {"label": "scratch", "score": 0.9, "box": list(SHORT), "box_norm": [0.5, 0.5, 0.5625, 0.5333],
         "size_mm": [1.0, 0.4], "area_mm2": 0.4, "size_rule": {"min_length_mm": 2.0}}] for p in passes)

    config["model"]["size_rules"] = {"scratch": {"min_length_mm": 0.5}}
    path.write_text(yaml.safe_dump(config))
    summary = daemon.reload("config")
    assert summary["applied"] == ["model.size_rules"]
    # results inspected before the swap may still arrive: judge from the first short scratch that failed
    sub.wait_for(lambda received: len(after_the_new_rule(received)) >= 4, timeout_s=60)
    later = after_the_new_rule(sub.payloads())
    assert len(later) >= 4 and {p["verdict"] for p in later} == {"fail"}  # both scratches reach 0.5 mm now
    assert not any("undersized_boxes" in p for p in later)


def after_the_new_rule(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Distinct results by seq from the first one that failed on the short scratch on."""
    ordered = sorted({p["msg_id"]: p for p in received}.values(), key=lambda p: p["seq"])
    firsts = [i for i, p in enumerate(ordered) if p["verdict"] == "fail" and p["defects"][0]["box"] == list(SHORT)]
    return ordered[firsts[0]:] if firsts else []
