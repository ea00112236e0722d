"""Soak run: the daemon (a real `edge-inspect run` subprocess) with the tiny model on synthetic frames, for a while.

Samples the daemon's RSS and open file descriptors (from /proc), and its outbox/queue depths and result count (from
its Prometheus endpoint) every `--interval` seconds, then reports RSS growth after warm-up (goal <= 1 %), the fd
trend and the depths as JSON in `bench/results/soak-<machine>.json`.

    python -m bench.soak --minutes 30            # the issue's run on this kind of machine
    python -m bench.soak --minutes 10 --fps 10   # shorter

The broker is a private Mosquitto (`agent.devbroker`); a persistent subscriber reads every result, as a PLC would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from agent.devbroker import Broker, make_broker
from agent.ports import free_port

RESULTS_DIR = Path(__file__).parent / "results"
RSS_GOAL = 0.01  # RSS growth after warm-up, as a fraction
METRICS = {"outbox_depth": "edge_inspect_outbox_depth", "queue_depth": "edge_inspect_learning_queue_depth",
           "results": "edge_inspect_results_total", "mqtt_connected": "edge_inspect_mqtt_connected"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="total run time")
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: 20 %% of the run, at most 5")
    parser.add_argument("--fps", type=float, default=10.0, help="synthetic camera frame rate")
    parser.add_argument("--size", type=int, default=128, help="synthetic frame size (pixels)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--machine", default=platform.node() or "unknown", help="name in the output file")
    parser.add_argument("--model", type=Path, default=None, help="model dir (default: build the tiny model)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output JSON (default bench/results/soak-<machine>.json)")
    return parser.parse_args(argv)


def soak_config(work: Path, model: Path, broker: Broker, args: argparse.Namespace, metrics_port: int) -> Path:
    config = {
        "device_id": "soak-box",
        "state_dir": str(work / "state"),
        "log_level": "warning",  # a long run at info would measure the log file, not the daemon
        "model": {"path": str(model), "classes": ["scratch", "hole", "stain"], "max_new_tokens": 12},
        "cameras": [{"name": "cam0", "source": f"synthetic:seed=1,size={args.size}", "fps": args.fps}],
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 10},
        "metrics": {"port": metrics_port},
        "queue": {"per_minute": 30, "max_bytes": 64 * 1024 * 1024, "random_rate": 0.05},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def proc_sample(pid: int) -> dict[str, float]:
    """RSS (MiB) and open file descriptors of `pid`."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    rss_mib = int(match.group(1)) / 1024 if match else float("nan")
    return {"rss_mib": round(rss_mib, 2), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def metrics_sample(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for key, name in METRICS.items():
        values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
        if values:
            out[key] = sum(values)
    return out


def run_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)


def sample_loop(daemon: subprocess.Popen[bytes], metrics_port: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    deadline = started + args.minutes * 60
    while time.monotonic() < deadline and daemon.poll() is None:
        samples.append({"t_s": round(time.monotonic() - started, 1), **proc_sample(daemon.pid),
                        **metrics_sample(metrics_port)})
        print(json.dumps(samples[-1]), flush=True)
        time.sleep(max(0.0, min(args.interval, deadline - time.monotonic())))
    return samples


def summarise(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """RSS growth from the first to the last minute after warm-up (medians, so one GC spike does not count)."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if len(after) < 4:
        return {"error": f"only {len(after)} samples after a warm-up of {warmup_s:.0f} s; run longer"}
    window = max(2, len(after) // 10)
    rss_start = statistics.median(s["rss_mib"] for s in after[:window])
    rss_end = statistics.median(s["rss_mib"] for s in after[-window:])
    growth = (rss_end - rss_start) / rss_start
    results = [s.get("results", 0.0) for s in samples]
    duration = samples[-1]["t_s"] - after[0]["t_s"]
    return {
        "rss_mib_after_warmup": round(rss_start, 2), "rss_mib_end": round(rss_end, 2),
        "rss_growth_fraction": round(growth, 5), "rss_goal_fraction": RSS_GOAL, "rss_goal_met": growth <= RSS_GOAL,
        "rss_mib_max": max(s["rss_mib"] for s in samples),
        "fds_after_warmup": after[0]["fds"], "fds_end": samples[-1]["fds"], "fds_max": max(s["fds"] for s in samples),
        "outbox_depth_max": max(s.get("outbox_depth", 0.0) for s in samples),
        "queue_depth_end": samples[-1].get("queue_depth"),
        "results_total": results[-1],
        "results_per_s_after_warmup": round((results[-1] - after[0].get("results", 0.0)) / max(duration, 1.0), 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warmup_s = 60 * (args.warmup_minutes if args.warmup_minutes is not None else min(5.0, args.minutes * 0.2))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        model = args.model or build_tiny(work / "model")
        broker = make_broker(work / "broker")
        metrics_port = free_port()
        daemon = run_daemon(soak_config(work, model, broker, args, metrics_port), work / "daemon.log")
        try:
            samples = sample_loop(daemon, metrics_port, args)
            crashed = daemon.poll() is not None
            daemon.send_signal(signal.SIGTERM)
            exit_code = daemon.wait(timeout=60)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            broker.stop()
        log_tail = (work / "daemon.log").read_text(errors="replace").splitlines()[-20:]
    report = {
        "machine": args.machine, "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(), "minutes": args.minutes, "warmup_s": warmup_s, "fps": args.fps,
        "frame_size": args.size, "model": str(args.model) if args.model else "tiny (random init)",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "crashed": crashed, "exit_code": exit_code,
        "summary": summarise(samples, warmup_s) if samples else {"error": "no samples"},
        "samples": samples, "log_tail": log_tail if crashed or exit_code else [],
    }
    out = args.out or RESULTS_DIR / f"soak-{args.machine}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["summary"], indent=1))
    return 0 if not crashed and exit_code == 0 else 1


def build_tiny(directory: Path) -> Path:
    from finetune.tiny import build_tiny_model

    return build_tiny_model(("scratch", "hole", "stain"), directory)


if __name__ == "__main__":
    raise SystemExit(main())
