"""Camera faults: thousands of corrupt and truncated frames, then the camera gone and back.

The camera is a directory replayed at 200 fps (a stand-in for a flaky GigE/USB camera or an NFS drop folder) with
one good frame in 20; the rest are garbage bytes, truncated JPEGs and PNGs, empty files and PNG headers with noise.
The daemon must neither crash nor inspect a corrupt frame, count every one, and its retained camera status topic
must say `offline` while the directory is gone and `online` once it is back.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import cv2
import pytest

from agent.capture.synthetic import SyntheticGenerator
from tests.faults.helpers import max_seq, wait_for_more, wait_until
from tests.fixtures.broker import Broker, Subscriber
from tests.fixtures.daemon import BASE, DaemonProcess, send_command, write_config

pytestmark = pytest.mark.faults

FILES = 3000
GOOD_EVERY = 20
CORRUPT = FILES - FILES // GOOD_EVERY


def corrupt_bytes(kind: int, good_jpeg: bytes, good_png: bytes, rng: random.Random) -> tuple[str, bytes]:
    """(suffix, content) of one broken image file, cycling through the ways files break."""
    variants = [
        (".jpg", good_jpeg[: rng.randrange(10, len(good_jpeg) - 2)]),  # truncated JPEG: no end-of-image marker
        (".png", good_png[: rng.randrange(16, len(good_png) - 12)]),  # truncated PNG: no IEND chunk
        (".jpg", rng.randbytes(rng.randrange(1, 4096))),  # garbage
        (".png", b""),  # empty file
        (".png", good_png[:8] + rng.randbytes(512) + good_png[-12:]),  # PNG signature and IEND around noise
        (".bmp", b"BM" + rng.randbytes(64)),  # header that promises more than it holds
    ]
    return variants[kind % len(variants)]


def make_frame_directory(directory: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    generator = SyntheticGenerator(seed=seed, size=96)
    good_jpeg = cv2.imencode(".jpg", generator.frame(0).image)[1].tobytes()
    good_png = cv2.imencode(".png", generator.frame(1).image)[1].tobytes()
    directory.mkdir(parents=True)
    for i in range(FILES):
        if i % GOOD_EVERY == 0:
            data = cv2.imencode(".png", generator.frame(i).image)[1]
            (directory / f"{i:05d}.png").write_bytes(data.tobytes())
        else:
            suffix, content = corrupt_bytes(i, good_jpeg, good_png, rng)
            (directory / f"{i:05d}{suffix}").write_bytes(content)


def states(status: Subscriber) -> list[str]:
    """Camera status states in arrival order, repeats collapsed (retained republishes after reconnects)."""
    out: list[str] = []
    for payload in status.payloads():
        if not out or out[-1] != payload["state"]:
            out.append(payload["state"])
    return out


def camera_counters(broker: Broker) -> dict:
    reply = send_command(broker, "status", b"{}")
    assert reply["ok"], reply
    return dict(reply["cameras"]["cam0"])


def test_thousands_of_corrupt_frames_and_a_vanishing_camera_never_crash_and_status_tells_the_truth(
        tmp_path: Path, tiny_model_dir: Path, mosquitto: Broker, results: Subscriber) -> None:
    frames = tmp_path / "frames"
    make_frame_directory(frames)
    camera = {"name": "cam0", "source": str(frames), "fps": 200, "no_frame_timeout_s": 2, "reconnect_min_s": 0.2,
              "reconnect_max_s": 1, "queue_size": 2}
    config = write_config(tmp_path, tiny_model_dir, mosquitto, [camera])
    status = Subscriber(mosquitto, f"{BASE}/cameras/cam0/status", client_id="hmi-camera-status")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        assert wait_for_more(results, 0, timeout_s=120) > 0, daemon.log_tail()
        corrupt_seen = wait_until(lambda: camera_counters(mosquitto)["corrupt"] >= 2 * CORRUPT, 120, step_s=2)
        before_gone = camera_counters(mosquitto)
        frames.rename(tmp_path / "frames.unplugged")
        went_offline = status.wait_for(lambda p: p[-1]["state"] == "offline", timeout_s=15)[-1]
        time.sleep(2.0)  # gone for a while: reconnect attempts fail and must keep it offline
        while_gone = camera_counters(mosquitto)
        seq_gone = max_seq(results.payloads())
        (tmp_path / "frames.unplugged").rename(frames)
        back = status.wait_for(lambda p: p[-1]["state"] == "online", timeout_s=30)[-1]
        resumed = wait_for_more(results, seq_gone, timeout_s=60)
        sequence = states(status)  # before SIGTERM, which truthfully turns the camera 'offline' ("stopped")
        exit_code = daemon.terminate()
    finally:
        status.close()
        daemon.ensure_dead()
    figures = (f"{FILES} files, {CORRUPT} corrupt per pass; counters before unplugging {before_gone}, while gone "
               f"{while_gone}; status sequence {sequence}; results up to seq {seq_gone} while gone, {resumed} "
               f"after; exit code {exit_code}")
    print(f"\ncamera faults: {figures}")
    assert corrupt_seen, f"corrupt frames were not counted: {figures}"
    assert went_offline["state"] == "offline" and while_gone["status"] == "offline", f"status lied: {figures}"
    assert back["state"] == "online" and resumed > seq_gone, f"camera did not come back: {figures}"
    assert sequence[-3:] == ["online", "offline", "online"], f"status sequence: {figures}"
    crashes = [r for r in daemon.log_records() if r.get("msg") in ("capture loop crashed", "outbox drain failed; "
                                                                   "retrying") or r.get("level") == "critical"]
    assert exit_code == 0 and not crashes, f"{figures}; crash records {json.dumps(crashes[:3])}"
