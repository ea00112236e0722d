"""Pipeline throughput vs the bare detector, measured side by side in one run (issue 3's bench; not a test).

Both sides see the same frames and the same model and batch size. The frames are synthetic, passed once through JPEG
so that every file format below holds exactly the same pixels; the daemon side replays them from a directory camera
and runs the real pipeline in-process: capture worker (file read + decode) -> batcher -> detector -> decide ->
results stage (SQLite outbox -> MQTT to a private Mosquitto, learning queue). Goal: pipeline >= 0.95 x bare detector.

The daemon side runs once per frame file format, because decoding is the capture thread's whole cost and it competes
with the detector for the same cores: `bmp` stands for a camera that delivers raw frames (GigE/USB3 Vision, V4L2
YUYV), `jpg` for MJPEG cameras, `png` for lossless archives. The sides take turns for `--rounds` rounds (bare, then
each format), so load that drifts during the run hits every side alike; rates are frames summed over rounds divided
by seconds summed over rounds, and the JSON keeps each round's rate too.

    .venv/bin/python -m bench.pipeline --model models/demo          # 3 rounds x 10 s per side
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import torch

from agent.capture.synthetic import SyntheticGenerator
from agent.cli_run import quiet_model_loading
from agent.config import Settings
from agent.daemon import Daemon, choose_model, detector_from_settings
from agent.detector.base import Detector
from agent.devbroker import Broker, free_port
from agent.health.logging import configure_logging

FORMATS = ("bmp", "jpg", "png")
OVERSUPPLY = 1.25  # camera rate / bare detector rate: the detector stays the bottleneck


@dataclass(frozen=True)
class CameraFrames:
    """Synthetic frames as a JPEG camera delivers them: the JPEG files, and the pixels they decode to (which the
    lossless formats store exactly, so every format and the bare detector see the same pixels)."""

    jpeg: list[bytes]
    pixels: list[np.ndarray]

    @classmethod
    def synthetic(cls, count: int, size: int) -> CameraFrames:
        gen = SyntheticGenerator(seed=11, size=size)
        jpeg: list[bytes] = []
        for i in range(count):
            ok, encoded = cv2.imencode(".jpg", gen.frame(i).image)
            if not ok:
                raise RuntimeError(f"OpenCV could not encode synthetic frame {i} as JPEG")
            jpeg.append(encoded.tobytes())
        pixels = [np.asarray(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR), np.uint8) for j in jpeg]
        return cls(jpeg, pixels)

    def write(self, folder: Path, fmt: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for i, (jpeg, image) in enumerate(zip(self.jpeg, self.pixels, strict=True)):
            path = folder / f"{i:05d}.{fmt}"
            if fmt == "jpg":
                path.write_bytes(jpeg)  # the camera's own bytes: re-encoding would change the pixels
            elif not cv2.imwrite(str(path), image):
                raise RuntimeError(f"OpenCV could not write {path}")
        return folder


def make_settings(tmp: Path, args: argparse.Namespace, frames_dir: Path, broker_port: int,
                  camera_fps: float = 1000.0) -> Settings:
    return Settings.model_validate({
        "device_id": "bench", "state_dir": str(tmp / "state"),
        "model": {"path": args.model, "classes": args.classes.split(","), "max_new_tokens": args.max_new_tokens},
        "cameras": [{"name": "cam0", "source": str(frames_dir), "fps": camera_fps, "queue_size": args.batch * 2}],
        "batch": {"max_frames": args.batch, "max_wait_ms": 5},
        "mqtt": {"port": broker_port}, "metrics": {"enabled": False}, "log_level": "warning",
    })


@dataclass
class Tally:
    """Frames finished and seconds spent, summed over rounds (a rate of sums, not a mean of rates)."""

    frames: int = 0
    seconds: float = 0.0
    dropped: int = 0
    rates: list[float] = field(default_factory=list)

    def add(self, frames: int, seconds: float, dropped: int = 0) -> None:
        self.frames, self.seconds, self.dropped = self.frames + frames, self.seconds + seconds, self.dropped + dropped
        self.rates.append(round(frames / seconds, 3))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds


def time_bare_detector(detector: Detector, frames: list[np.ndarray], batch: int, seconds: float, tally: Tally) -> None:
    detector.detect(frames[:batch])  # warm-up
    done, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        detector.detect([frames[(i + k) % len(frames)] for k in range(batch)])
        done, i = done + batch, i + batch
    tally.add(done, time.perf_counter() - t0)


def time_pipeline(settings: Settings, seconds: float, tally: Tally) -> None:
    """Results stored in the outbox (the end of the pipeline) per second, with all of the daemon's threads running."""
    daemon = Daemon(settings)
    daemon.start()
    try:
        daemon.step()  # warm-up batch
        first_seq, dropped_before, t0 = daemon.outbox.last_seq(), _dropped(daemon), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            daemon.step()
        tally.add(daemon.outbox.last_seq() - first_seq, time.perf_counter() - t0, _dropped(daemon) - dropped_before)
    finally:
        daemon.stop()
        daemon.shutdown()


def _dropped(daemon: Daemon) -> int:
    return sum(w.counters.dropped for w in daemon.workers.values())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--classes", default="scratch,hole,stain")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="bare, then each format, this many times over")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"frame file formats, of {FORMATS}")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the detector (default: torch's, one per core); 1 on a 2-core box "
                             "leaves a core to the rest of the pipeline, as when the detector runs on a GPU")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(args.formats) - set(FORMATS))
    if unknown:
        parser.error(f"--formats: unknown format(s) {unknown}; choose from {FORMATS}")
    return args


def run_all(args: argparse.Namespace, tmp: Path, broker: Broker) -> dict[str, object]:
    """Bare detector and each format's pipeline in turn, `rounds` times, so drifting machine load hits all alike."""
    camera = CameraFrames.synthetic(args.frames, args.size)
    frames = camera.pixels
    folders = {fmt: camera.write(tmp / f"frames-{fmt}", fmt) for fmt in args.formats}
    settings = make_settings(tmp, args, tmp / "unused", broker.port)
    detector = detector_from_settings(settings, choose_model(settings))
    bare, pipes = Tally(), {fmt: Tally() for fmt in args.formats}
    for _ in range(args.rounds):
        time_bare_detector(detector, frames, args.batch, args.seconds, bare)
        camera_fps = OVERSUPPLY * bare.rates[-1]
        for fmt, folder in folders.items():
            time_pipeline(make_settings(tmp / fmt, args, folder, broker.port, camera_fps), args.seconds, pipes[fmt])
    runs = {}
    for fmt, tally in pipes.items():
        runs[fmt] = {"fps": round(tally.fps, 3), "ratio": round(tally.fps / bare.fps, 3), "frames": tally.frames,
                     "capture_dropped": tally.dropped, "fps_per_round": tally.rates}
        print(f"{fmt}: pipeline {tally.fps:.2f} frames/s | bare detector {bare.fps:.2f} | ratio "
              f"{runs[fmt]['ratio']:.3f} | {tally.dropped} frames dropped by capture")
    return {"bare_detector_fps": round(bare.fps, 3), "bare_fps_per_round": bare.rates,
            "camera_oversupply": OVERSUPPLY, "pipeline": runs}


def main() -> None:
    args = parse_args()
    configure_logging("warning")
    quiet_model_loading()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(workdir=tmp / "broker", port=free_port())
        broker.start()
        try:
            measured = run_all(args, tmp, broker)
        finally:
            broker.stop()
    report = {
        "bench": "pipeline", "machine": socket.gethostname(), "platform": platform.platform(),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": args.model,
        "batch": args.batch, "max_new_tokens": args.max_new_tokens, "seconds": args.seconds, "rounds": args.rounds,
        "frame_size": args.size, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "goal_ratio": 0.95, **measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.threads}thread" if args.threads is not None else ""
    path = args.out / f"pipeline-{report['machine']}{suffix}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
