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

With `--station-compare` it measures instead what the technician's station costs the line (issue 11: with the
station on and one browser following the live view, >= 0.97 x the frames/s with it off, <= 60 MB RSS added). After
one bare-detector run (it sets the camera's rate), one daemon runs `--rounds` pairs of windows, its station stopped
(off) and running (on) in alternating order, so that neighbouring windows share the load of the moment; the station
is started by the daemon's own start-up step. In each on window a technician logs in from `bench/station_client.py`,
a browser-like client in a process of its own that makes the live page's requests (the live event stream, each
announced frame JPEG, recent thumbnails). Frames/s and CPU by thread come from these windows. The RSS comes from
`--rss-rounds` pairs of fresh processes (station disabled, enabled): their RSS after warm-up, on minus off (both
import the station's modules, as the daemon always does), plus what importing FastAPI, uvicorn and the station's
routes cost, measured in a fresh interpreter.

    .venv/bin/python -m bench.pipeline --model models/demo          # 3 rounds x 10 s per side
    .venv/bin/python -m bench.pipeline --model models/demo --station-compare --rounds 12 --seconds 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from argon2 import PasswordHasher

from agent.capture.synthetic import SyntheticGenerator
from agent.cli.run import quiet_model_loading
from agent.config import Settings
from agent.daemon import Daemon
from agent.detector.base import Detector
from agent.devbroker import Broker
from agent.health.logging import configure_logging
from agent.model_choice import choose_model, detector_from_settings
from agent.ports import free_port

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
                  camera_fps: float = 1000.0, station: dict[str, Any] | None = None) -> Settings:
    return Settings.model_validate({
        "device_id": "bench", "state_dir": str(tmp / "state"),
        "model": {"path": args.model, "classes": args.classes.split(","), "max_new_tokens": args.max_new_tokens,
                  "backend": args.backend},
        "cameras": [{"name": "cam0", "source": str(frames_dir), "fps": camera_fps, "queue_size": args.batch * 2}],
        "batch": {"max_frames": args.batch, "max_wait_ms": 5},
        "mqtt": {"port": broker_port}, "metrics": {"enabled": False}, "station": station or {"enabled": False},
        "log_level": "warning",
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


@dataclass(frozen=True)
class Window:
    """One measuring window of a running daemon: results stored, frames capture dropped, the window's bounds on
    `time.monotonic()` (CLOCK_MONOTONIC, the station client's clock too) and the process RSS sampled in it."""

    frames: int
    dropped: int
    start: float
    end: float
    rss_mb: list[float]

    @property
    def seconds(self) -> float:
        return self.end - self.start


def rss_mb(status: Path = Path("/proc/self/status")) -> float:
    """This process's resident set size (VmRSS) in MiB."""
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS line in {status}")


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) each named Python thread of this process has used, summed by name (the
    station's uvicorn loop is `station`, its endpoint pool `AnyIO worker thread`); torch's OpenMP threads are not
    Python threads and do not appear."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            stat = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        fields = stat[stat.rindex(")") + 2:].split()  # after "tid (comm) ": state is field 3, utime 14, stime 15
        used[thread.name] = used.get(thread.name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def main_thread_waits() -> int:
    """How often the main (inference) thread has blocked so far: its voluntary context switches (waits for the GIL,
    for frames, for locks). A station that makes it wait for the GIL more often shows here."""
    status = Path(f"/proc/self/task/{threading.main_thread().native_id}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("voluntary_ctxt_switches")))


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_window(daemon: Daemon, seconds: float, rss_every_s: float = 0.5) -> Window:
    """Run the daemon's inference loop for `seconds`; results stored in the outbox (the end of the pipeline) count."""
    first_seq, dropped_before = daemon.outbox.last_seq(), _dropped(daemon)
    samples: list[float] = []
    next_sample = t0 = time.monotonic()
    while (now := time.monotonic()) - t0 < seconds:
        if now >= next_sample:
            samples.append(rss_mb())
            next_sample = now + rss_every_s
        daemon.step()
    end = time.monotonic()
    samples.append(rss_mb())
    return Window(daemon.outbox.last_seq() - first_seq, _dropped(daemon) - dropped_before, t0, end, samples)


def time_pipeline(settings: Settings, seconds: float, tally: Tally) -> None:
    """Results stored in the outbox per second, with all of the daemon's threads running."""
    daemon = Daemon(settings)
    daemon.start()
    try:
        daemon.step()  # warm-up batch
        window = measure_window(daemon, seconds)
        tally.add(window.frames, window.seconds, window.dropped)
    finally:
        daemon.stop()
        daemon.shutdown()


def _dropped(daemon: Daemon) -> int:
    return sum(w.counters.dropped for w in daemon.workers.values())


# ----- --station-compare: the line with the station off and on (issue 11) -------------------------------------------
STATION_USER = "tech"
STATION_GOAL_RATIO = 0.97  # frames/s with the station on, over frames/s with it off
STATION_GOAL_RSS_MB = 60.0
STATION_THREADS = ("station", "AnyIO worker thread")  # uvicorn's loop; the pool that runs sync endpoints
# What the daemon imports besides the station's server stack, then that stack: run in a fresh interpreter, the RSS
# difference is what importing FastAPI + uvicorn + the station's routes costs (the daemon imports them at start-up,
# also with the station disabled).
IMPORT_COST_CODE = """
import json, sys
def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
import cv2, numpy, paho.mqtt.client, pydantic, structlog, torch, transformers
import agent.capture.worker, agent.config, agent.control.commands, agent.decide, agent.detector.factory
import agent.health.metrics, agent.health.notify, agent.learn.queue, agent.model_choice, agent.publish.mqtt
import agent.publish.outbox, agent.publish.result, agent.reload, agent.stage, agent.store.files
import agent.station.backend, agent.station.live
assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules
before, known = rss_mb(), {name.split('.')[0] for name in sys.modules}
import agent.station.hosting
after = rss_mb()
added = sorted({name.split('.')[0] for name in sys.modules} - known)
print(json.dumps({'before_mb': round(before, 1), 'after_mb': round(after, 1), 'packages': added}))
"""


CLIENT_NICE = 19


class ClientProcess:
    """bench/station_client.py in a process of its own (a browser is one), logged in and following the live view.

    A technician's browser runs on a panel or a phone, not on the inspection box; here it has to share the box's
    cores, so it runs at the lowest CPU priority (`CLIENT_NICE`) to take as little from the line as it can. Its CPU
    time is still reported (`client_process_cpu_s_mean`)."""

    def __init__(self, url: str, password: str) -> None:
        env = {**os.environ, "BENCH_STATION_PASSWORD": password}
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.station_client", url, STATION_USER],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=lambda: os.nice(CLIENT_NICE))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the client gives up after its own 30 s and says so in its report
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"the station client did not start (exit {self.proc.returncode})")

    def finish(self) -> dict[str, Any]:
        """Close its stdin (its signal to stop) and return what it saw."""
        out, _ = self.proc.communicate(timeout=30)
        if self.proc.returncode != 0:
            raise RuntimeError(f"the station client failed (exit {self.proc.returncode})")
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass(frozen=True)
class SideSetup:
    """Where one side of --station-compare runs: its state directory, the camera's frames and rate, the broker."""

    state: Path
    frames_dir: Path
    camera_fps: float
    broker_port: int


def station_section(password: str) -> dict[str, Any]:
    """The station on a free loopback port with one technician (argon2 with the library's default cost)."""
    user = {"name": STATION_USER, "role": "technician", "password_hash": PasswordHasher().hash(password)}
    return {"enabled": True, "host": "127.0.0.1", "port": 0, "users": [user]}


def client_rates(seen: dict[str, Any], window: Window) -> dict[str, Any]:
    """What the client received inside the measuring window; its errors counted by message."""
    updates = sum(window.start <= t < window.end for t in seen["updates"])
    thumbs = sum(window.start <= t < window.end for t in seen["thumbs"])
    jpegs = [n for t, n in zip(seen["jpegs"], seen["jpeg_bytes"], strict=True) if window.start <= t < window.end]
    return {"updates": updates, "jpegs": len(jpegs), "thumbnails": thumbs, "seconds": round(window.seconds, 3),
            "mean_jpeg_kb": round(sum(jpegs) / len(jpegs) / 1024, 1) if jpegs else None,
            "errors": dict(Counter(seen["errors"])), "client_cpu_s": seen["cpu_s"]}


def warm_up(daemon: Daemon, seconds: float) -> None:
    """Run the line for `seconds` before measuring, so caches, arenas and the client's stream are in steady state."""
    t0 = time.monotonic()
    daemon.step()
    while time.monotonic() - t0 < seconds:
        daemon.step()


def measure_side(daemon: Daemon, args: argparse.Namespace, side: str, client: ClientProcess | None) -> dict[str, Any]:
    """Warm up, then one measuring window of the running daemon: frames/s, CPU by thread, RSS (meaningful only in a
    fresh process) and what `client` received (it is finished here)."""
    try:
        warm_up(daemon, args.warmup)
        threads_before, cpu_before, waits_before = thread_cpu_s(), process_cpu_s(), main_thread_waits()
        window = measure_window(daemon, args.seconds)
        threads, cpu = cpu_used_since(threads_before), process_cpu_s() - cpu_before
        waits = main_thread_waits() - waits_before
        seen = client.finish() if client is not None else None
    finally:
        if client is not None:
            client.kill()
    result = {"side": side, "frames": window.frames, "seconds": round(window.seconds, 3),
              "capture_dropped": window.dropped, "rss_mb": round(statistics.median(window.rss_mb), 1),
              "rss_max_mb": round(max(window.rss_mb), 1), "process_cpu_s": round(cpu, 3), "thread_cpu_s": threads,
              "inference_thread_waits": waits}
    return {**result, "client": client_rates(seen, window)} if seen is not None else result


def station_of(daemon: Daemon) -> Any:
    """The daemon's running station server, or None."""
    return daemon.station_link.server if daemon.station_link is not None else None


def station_daemon(args: argparse.Namespace, setup: SideSetup, password: str | None) -> Daemon:
    """A started daemon on the setup's camera; with a password, its station is on with a technician who has it."""
    station = station_section(password) if password is not None else None
    daemon = Daemon(make_settings(setup.state, args, setup.frames_dir, setup.broker_port, setup.camera_fps, station))
    daemon.start()
    if password is not None and station_of(daemon) is None:
        daemon.shutdown()
        raise RuntimeError("the station did not start (see the log)")
    return daemon


def run_station_windows(args: argparse.Namespace, setup: SideSetup) -> dict[str, list[dict[str, Any]]]:
    """`rounds` pairs of windows of one running daemon, its station stopped (off) or running with the client
    following it (on), in alternating order: neighbouring windows share the machine's load of the moment."""
    password = secrets.token_urlsafe(16)
    daemon = station_daemon(args, setup, password)
    sides: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        for index in range(args.rounds):
            for side in alternating(index):
                sides[side].append(station_window(daemon, args, side, password))
    finally:
        daemon.stop()
        daemon.shutdown()
    return sides


def station_window(daemon: Daemon, args: argparse.Namespace, side: str, password: str) -> dict[str, Any]:
    """Stop the station for an off window; for an on window start it as the daemon's start-up does (when it is
    not running) and let a fresh client log in; then measure."""
    if side == "off":
        if daemon.station_link is not None:
            daemon.station_link.stop()
        return measure_side(daemon, args, side, None)
    if station_of(daemon) is None:
        daemon._start_station()
    assert station_of(daemon) is not None, "the station did not start (see the log)"
    return measure_side(daemon, args, side, ClientProcess(station_of(daemon).url, password))


def run_station_side(args: argparse.Namespace, side: str, setup: SideSetup) -> dict[str, Any]:
    """One side in this fresh process, for the RSS: the station disabled (off), or enabled with the client."""
    password = secrets.token_urlsafe(16) if side == "on" else None
    daemon = station_daemon(args, setup, password)
    try:
        client = ClientProcess(station_of(daemon).url, password) if station_of(daemon) and password else None
        return measure_side(daemon, args, side, client)
    finally:
        daemon.stop()
        daemon.shutdown()


def cpu_used_since(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds per thread name since `before` (threads started meanwhile count from zero)."""
    return {name: round(total - before.get(name, 0.0), 3) for name, total in thread_cpu_s().items()}


def run_side_process(args: argparse.Namespace, side: str, setup: SideSetup) -> dict[str, Any]:
    """`run_station_side` in a fresh interpreter, so that the process's RSS is that side's own (no arenas, threads
    or caches left over from earlier windows)."""
    command = [sys.executable, "-m", "bench.pipeline", "--model", args.model, "--classes", args.classes,
               "--batch", str(args.batch), "--backend", args.backend, "--max-new-tokens", str(args.max_new_tokens),
               "--seconds", str(args.rss_seconds), "--warmup", str(args.warmup), "--station-side", side,
               "--camera-fps", f"{setup.camera_fps:.3f}", "--frames-dir", str(setup.frames_dir),
               "--broker-port", str(setup.broker_port), "--state", str(setup.state)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"station {side} side failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def import_cost() -> dict[str, Any]:
    """RSS that importing the station's server stack adds, in a fresh interpreter (see IMPORT_COST_CODE)."""
    done = subprocess.run([sys.executable, "-c", IMPORT_COST_CODE], capture_output=True, text=True, check=True)
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**measured, "added_mb": round(measured["after_mb"] - measured["before_mb"], 1)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--classes", default="scratch,hole,stain")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="bare, then each format, this many times over")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--backend", default="torch-eager", help="model.backend of both sides")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"frame file formats, of {FORMATS}")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the detector (default: torch's, one per core); 1 on a 2-core box "
                             "leaves a core to the rest of the pipeline, as when the detector runs on a GPU")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    add_station_args(parser)
    args = parser.parse_args()
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(args.formats) - set(FORMATS))
    if unknown:
        parser.error(f"--formats: unknown format(s) {unknown}; choose from {FORMATS}")
    return args


def add_station_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--station-compare", action="store_true",
                        help="instead of the format comparison: the line with the station off and on (a technician "
                             "logged in, one browser-like client following the live view) in alternating windows, "
                             "and the RSS the station adds; writes pipeline-station-MACHINE.json")
    parser.add_argument("--station-format", default="bmp", choices=FORMATS,
                        help="frame file format of --station-compare (bmp: a camera delivering raw frames)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="--station-compare: seconds each window runs (client connected) before measuring")
    parser.add_argument("--rss-rounds", type=int, default=2,
                        help="--station-compare: pairs of fresh processes (off, on) measured for the RSS "
                        "(0: frames/s only)")
    parser.add_argument("--rss-seconds", type=float, default=10.0,
                        help="--station-compare: measuring time of each fresh process")
    # one side of --station-compare, run by the bench itself in a child process
    parser.add_argument("--station-side", choices=("off", "on"), help=argparse.SUPPRESS)
    parser.add_argument("--camera-fps", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--frames-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--broker-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)


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


def run_station_compare(args: argparse.Namespace, tmp: Path, broker: Broker) -> dict[str, Any]:
    """The bare detector once (it sets the camera's rate, as in the format comparison); then `rounds` pairs of
    windows of one daemon with its station stopped and running, in alternating order; then `rss_rounds` pairs of
    fresh processes (station disabled, enabled) for the RSS."""
    camera = CameraFrames.synthetic(args.frames, args.size)
    folder = camera.write(tmp / f"frames-{args.station_format}", args.station_format)
    settings = make_settings(tmp, args, tmp / "unused", broker.port)
    bare = Tally()
    time_bare_detector(detector_from_settings(settings, choose_model(settings)), camera.pixels, args.batch,
                       args.seconds, bare)
    camera_fps = OVERSUPPLY * bare.fps
    sides = run_station_windows(args, SideSetup(tmp / "station", folder, camera_fps, broker.port))
    fresh: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for index in range(args.rss_rounds):
        for side in alternating(index):
            setup = SideSetup(tmp / f"fresh-{side}-{index}", folder, camera_fps, broker.port)
            fresh[side].append(run_side_process(args, side, setup))
    return {"bare_detector_fps": round(bare.fps, 3), "camera_fps": round(camera_fps, 3),
            "camera_oversupply": OVERSUPPLY, "station_format": args.station_format, "warmup_s": args.warmup,
            "rss_seconds": args.rss_seconds, "rss_rounds": args.rss_rounds,
            "station": summarise_station(sides, fresh, import_cost())}


def alternating(index: int) -> tuple[str, str]:
    return ("off", "on") if index % 2 == 0 else ("on", "off")


def side_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Frames/s as a rate of sums over the windows, and CPU seconds per second by thread name."""
    frames, seconds = sum(r["frames"] for r in results), sum(r["seconds"] for r in results)
    threads: Counter[str] = Counter()
    for result in results:
        threads.update(result["thread_cpu_s"])
    return {"fps": round(frames / seconds, 3), "frames": frames, "seconds": round(seconds, 3),
            "capture_dropped": sum(r["capture_dropped"] for r in results),
            "fps_per_round": [round(r["frames"] / r["seconds"], 3) for r in results],
            "process_cpu_s_per_s": round(sum(r["process_cpu_s"] for r in results) / seconds, 3),
            "inference_thread_waits_per_s": round(sum(r["inference_thread_waits"] for r in results) / seconds, 1),
            "station_cpu_s_per_s": round(sum(threads[name] for name in STATION_THREADS) / seconds, 4),
            "thread_cpu_s_per_s": {name: round(used / seconds, 4) for name, used in threads.most_common()}}


def client_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    clients = [r["client"] for r in results]
    seconds = sum(c["seconds"] for c in clients)
    errors: Counter[str] = Counter()
    for client in clients:
        errors.update(client["errors"])
    return {"updates_per_s": round(sum(c["updates"] for c in clients) / seconds, 3),
            "jpegs_per_s": round(sum(c["jpegs"] for c in clients) / seconds, 3),
            "thumbnails_per_s": round(sum(c["thumbnails"] for c in clients) / seconds, 3),
            "mean_jpeg_kb": round(statistics.mean(c["mean_jpeg_kb"] for c in clients if c["mean_jpeg_kb"]), 1),
            # each client process's CPU over its whole life: interpreter start-up, login, warm-up and window
            "client_process_cpu_s_mean": round(statistics.mean(c["client_cpu_s"] for c in clients), 3),
            "errors": dict(errors)}


def ratio_summary(off: dict[str, Any], on: dict[str, Any]) -> dict[str, Any]:
    """On over off: of the summed rates (the figure), and per round (median; geometric mean with the standard error
    of its log, as a factor) to judge the noise: a load burst in one window makes one ratio huge or tiny."""
    per_round = [a / b for a, b in zip(on["fps_per_round"], off["fps_per_round"], strict=True)]
    logs = [math.log(r) for r in per_round]
    stderr = statistics.stdev(logs) / len(logs) ** 0.5 if len(logs) > 1 else 0.0
    return {"ratio_on_off": round(on["fps"] / off["fps"], 3),
            "ratio_on_off_per_round": [round(r, 3) for r in per_round],
            "ratio_per_round_median": round(statistics.median(per_round), 3),
            "ratio_per_round_geomean": round(math.exp(statistics.mean(logs)), 3),
            "ratio_per_round_geomean_stderr_factor": round(math.exp(stderr), 3)}


def rss_summary(fresh: dict[str, list[dict[str, Any]]], imports: dict[str, Any]) -> dict[str, Any]:
    """RSS the station adds: fresh processes on minus off (each the median of its window's samples), plus the
    import cost of its server stack (which the daemon pays also with the station off)."""
    off = [r["rss_mb"] for r in fresh["off"]]
    on = [r["rss_mb"] for r in fresh["on"]]
    running = statistics.mean(on) - statistics.mean(off)
    return {"off_mb_per_process": off, "on_mb_per_process": on,
            "on_max_mb_per_process": [r["rss_max_mb"] for r in fresh["on"]],
            "fresh_process_fps": {side: [round(r["frames"] / r["seconds"], 3) for r in results]
                                  for side, results in fresh.items()},
            "running_added_mb": round(running, 1), "import_added_mb": imports["added_mb"], "import": imports,
            "total_added_mb": round(running + imports["added_mb"], 1)}


def summarise_station(sides: dict[str, list[dict[str, Any]]], fresh: dict[str, list[dict[str, Any]]],
                      imports: dict[str, Any]) -> dict[str, Any]:
    off, on = side_summary(sides["off"]), side_summary(sides["on"])
    client = client_summary(sides["on"])
    ratios = ratio_summary(off, on)
    rss = rss_summary(fresh, imports) if fresh["off"] and fresh["on"] else None  # --rss-rounds 0: frames/s only
    print(f"station off {off['fps']:.2f} frames/s | on {on['fps']:.2f} | ratio {ratios['ratio_on_off']:.3f} "
          f"(per round: median {ratios['ratio_per_round_median']:.3f}, geometric mean "
          f"{ratios['ratio_per_round_geomean']:.3f} x/ {ratios['ratio_per_round_geomean_stderr_factor']:.3f}; goal >= "
          f"{STATION_GOAL_RATIO}) | client {client['updates_per_s']:.2f} updates/s, {client['jpegs_per_s']:.2f} JPEG/s")
    if rss is not None:
        print(f"station RSS: running {rss['running_added_mb']:+.1f} MB + imports {rss['import_added_mb']:.1f} MB "
              f"= {rss['total_added_mb']:.1f} MB (goal <= {STATION_GOAL_RSS_MB:.0f})")
    return {"off": off, "on": {**on, "client": client}, **ratios, "rss": rss,
            "goal_ratio": STATION_GOAL_RATIO, "goal_rss_mb": STATION_GOAL_RSS_MB,
            "meets_goal_ratio": ratios["ratio_on_off"] >= STATION_GOAL_RATIO,
            "meets_goal_rss": rss["total_added_mb"] <= STATION_GOAL_RSS_MB if rss is not None else None}


def main() -> None:
    args = parse_args()
    configure_logging("warning")
    quiet_model_loading()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.station_side is not None:  # one fresh-process side of --station-compare
        setup = SideSetup(args.state, args.frames_dir, args.camera_fps, args.broker_port)
        print(json.dumps(run_station_side(args, args.station_side, setup)))
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Broker(workdir=tmp / "broker", port=free_port())
        broker.start()
        try:
            measured = run_station_compare(args, tmp, broker) if args.station_compare else run_all(args, tmp, broker)
        finally:
            broker.stop()
    write_report(args, load_before, measured)


def write_report(args: argparse.Namespace, load_before: tuple[float, float, float], measured: dict[str, Any]) -> None:
    report = {
        "bench": "pipeline-station" if args.station_compare else "pipeline", "machine": socket.gethostname(),
        "platform": platform.platform(), "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model, "backend": args.backend, "batch": args.batch, "max_new_tokens": args.max_new_tokens,
        "seconds": args.seconds,
        "rounds": args.rounds, "frame_size": args.size, "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        **({} if args.station_compare else {"goal_ratio": 0.95}), **measured,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.threads}thread" if args.threads is not None else ""
    path = args.out / f"{report['bench']}-{report['machine']}{suffix}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
