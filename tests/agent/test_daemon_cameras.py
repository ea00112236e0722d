"""The daemon with several cameras, one of them bad: `edge-inspect run` as a subprocess, a real Mosquitto, a real
GigE Vision camera on loopback (`arv-fake-gv-camera-0.8`). The bad camera is `offline` with its reason, the others
inspect, and the daemon stays up."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DaemonProcess, daemon_config, write_config
from tests.fixtures.genicam import FakeCamera

pytestmark = pytest.mark.slow

MISSING = "genicam://edge-inspect-no-such-camera"  # check-config cannot know it is switched off: it passes


def test_a_camera_that_cannot_open_is_offline_with_the_reason_while_the_others_inspect(
        tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker, fake_camera: FakeCamera) -> None:
    cameras = [
        {"name": "synth", "source": "synthetic:seed=1,size=128", "fps": 4},
        {"name": "line", "source": fake_camera.uri, "fps": 4,
         "genicam": {"pixel_format": "Mono8", "trigger": "software", "line_scan": {"lines_per_frame": 64,
                                                                                   "lines_per_buffer": 16}}},
        {"name": "bad", "source": MISSING, "reconnect_min_s": 0.5, "reconnect_max_s": 2},
    ]
    config = write_config(tmp_path, tiny_model_dir, mosquitto, cameras)
    results = Subscriber(mosquitto, f"{BASE}/cameras/+/result", client_id=f"plc-{uuid.uuid4().hex[:6]}")
    bad_status = Subscriber(mosquitto, f"{BASE}/cameras/bad/status", client_id=f"hmi-{uuid.uuid4().hex[:6]}")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        inspected = results.wait_for(lambda p: {"synth", "line"} <= {r["camera"] for r in p}, timeout_s=120)
        assert {"synth", "line"} <= {r["camera"] for r in inspected}, daemon.log_tail()
        assert "bad" not in {r["camera"] for r in inspected}
        states = bad_status.wait_for(lambda p: bool(p), timeout_s=30)
        assert states and states[-1]["state"] == "offline", daemon.log_tail()
        assert "edge-inspect-no-such-camera" in states[-1]["reason"], states[-1]
        assert daemon.alive(), daemon.log_tail()
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        results.close()
        bad_status.close()
        daemon.ensure_dead()


def test_check_config_refuses_a_source_no_camera_can_serve_before_anything_starts(tmp_path: Path,
                                                                                  tiny_model_dir: Path) -> None:
    """The issue's crash: `ftp://` passed check-config, then `run` died with a traceback after publishing `online`."""
    cameras = [{"name": "good", "source": "synthetic:"}, {"name": "bad", "source": "ftp://cam.local/stream"}]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(daemon_config(tmp_path, tiny_model_dir, cameras=cameras, port=1)))
    for command in ("check-config", "run"):
        done = subprocess.run([sys.executable, "-m", "agent.cli", command, "--config", str(config)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (command, done.stderr)
        assert "camera 'bad': source 'ftp://cam.local/stream' cannot work: unsupported source URI" in done.stderr
        assert "Traceback" not in done.stderr
