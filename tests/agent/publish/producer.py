"""Test-only daemon stand-in: appends fake results to a durable Outbox and drains it with MqttPublisher.

Run: python -m tests.agent.publish.producer STATE_DIR PORT COUNT RATE_HZ
Prints `appended <seq>` per result (flushed) so a test can SIGKILL it mid-stream; on reaching COUNT it waits until the
outbox is empty, stops cleanly (publishing `offline`) and prints `drained`. A restarted producer first delivers what
the outbox still holds, then continues the sequence where the database left it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from agent.config import MqttConfig, Settings
from agent.detections import Detections
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox
from agent.publish.result import build_result
from agent.statedir import StateDir

DEVICE = "prod-box"
CAMERA = "cam0"


def settings_for(port: int, state_dir: Path) -> Settings:
    return Settings(device_id=DEVICE, state_dir=state_dir, mqtt=MqttConfig(port=port, keepalive=5, reconnect_max_s=1))


def main(state_dir: Path, port: int, count: int, rate_hz: float) -> None:
    settings = settings_for(port, state_dir)
    outbox = Outbox(StateDir(state_dir).outbox, max_bytes=64 * 1024 * 1024)
    publisher = MqttPublisher(settings, outbox, version="test")
    publisher.start()
    topic = publisher.topics.result(CAMERA)
    while outbox.last_seq() < count:
        seq, _ = outbox.append(topic, lambda seq, msg_id: fake_result(seq, msg_id))
        publisher.wake()
        print(f"appended {seq}", flush=True)
        time.sleep(1.0 / rate_hz)
    while outbox.depth() > 0:
        time.sleep(0.05)
    publisher.stop()
    print("drained", flush=True)


def fake_result(seq: int, msg_id: str) -> dict[str, object]:
    return build_result(
        seq=seq,
        msg_id=msg_id,
        device=DEVICE,
        camera=CAMERA,
        frame_id=seq,
        part_id=None,
        captured_at=time.time(),
        model="tiny@test",
        verdict="pass",
        detections=Detections.empty(["scratch"], (64, 64)),
        latency_ms=1.0,
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
