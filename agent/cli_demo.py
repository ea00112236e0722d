"""`edge-inspect demo` (what `make demo` runs): the whole product on one machine, for about 30 seconds.

It builds (or reuses) the tiny demo model trained on synthetic defects, starts a private Mosquitto on a free port,
runs `edge-inspect run` on a `synthetic:` camera against it, prints every result message a subscriber receives, and
stops everything cleanly (SIGTERM: the daemon drains its outbox and publishes `offline`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import typer
import yaml

DEMO_CLASSES = ["scratch", "hole", "stain"]


def demo(
    model: Path = typer.Option(Path("models/demo"), "--model", help="demo model directory (built when missing)"),
    seconds: float = typer.Option(30.0, "--seconds", min=1, help="how long to run the daemon"),
    steps: int = typer.Option(600, "--steps", min=1, help="training steps when the demo model must be built"),
    fps: float = typer.Option(4.0, "--fps", min=0.1, help="synthetic camera frame rate"),
) -> None:
    """Run the daemon on a synthetic camera against a private broker and print its results."""
    from agent.devbroker import Broker, free_port

    thresholds = ensure_demo_model(model, steps)
    typer.echo(f"per-class thresholds: {thresholds}")
    with tempfile.TemporaryDirectory(prefix="edge-inspect-demo-") as tmp:
        broker = Broker(workdir=Path(tmp) / "broker")
        broker.start()
        typer.echo(f"mosquitto listening on 127.0.0.1:{broker.port}")
        config = write_demo_config(Path(tmp), model, broker.port, free_port(), fps, thresholds)
        try:
            count = run_daemon_and_print(config, broker, seconds)
        finally:
            broker.stop()
    typer.echo(f"demo finished: {count} result messages received")
    if count == 0:
        raise typer.Exit(code=1)


def ensure_demo_model(model: Path, steps: int) -> dict[str, float]:
    """Reuse a trained demo model, else train one now; returns its per-class thresholds (fitted once, kept)."""
    if (model / "demo_metrics.json").is_file() and (model / "model.safetensors").is_file():
        typer.echo(f"using demo model {model} ({json.loads((model / 'demo_metrics.json').read_text())['steps']} "
                   "training steps)")
    else:
        typer.echo(f"training the demo model into {model} ({steps} steps; reused next time)")
        from finetune.cli_model import demo as train_demo_model

        train_demo_model(out=model, steps=steps, seed=0, threads=0)
    thresholds_file = model / "thresholds.json"
    if not thresholds_file.is_file():
        thresholds_file.write_text(json.dumps(fit_demo_thresholds(model), indent=2) + "\n")
    return {k: float(v) for k, v in json.loads(thresholds_file.read_text()).items()}


def fit_demo_thresholds(model: Path, frames: int = 48, target_recall: float = 0.5) -> dict[str, float]:
    """Per-class thresholds at `target_recall` on unseen synthetic frames (a seed training never used).

    The tiny demo model is far less sure of itself than a real fine-tuned Florence-2 (its correct boxes score
    ~0.1-0.2), so the default threshold of 0.5 would pass every frame; a real box gets its thresholds from a
    recalibration run on its own line instead.
    """
    from agent.capture.synthetic import SyntheticGenerator
    from agent.detector.florence2 import Florence2Detector
    from calibration.thresholds import fit_thresholds, thresholds_of
    from finetune.evaluate import class_pr_data

    typer.echo(f"fitting per-class thresholds for recall {target_recall} on {frames} unseen synthetic frames")
    detector = Florence2Detector(model, class_names=DEMO_CLASSES)
    size = detector.image_size[0]
    truth = SyntheticGenerator(seed=424242, size=size, classes=DEMO_CLASSES).frames(frames)
    predictions = [d for i in range(0, frames, 8) for d in detector.detect([f.image for f in truth[i : i + 8]])]
    pr = class_pr_data([f.detections for f in truth], predictions, DEMO_CLASSES)
    return thresholds_of(fit_thresholds(pr, target_recall, "recall", fallback=0.5))


def write_demo_config(tmp: Path, model: Path, broker_port: int, metrics_port: int, fps: float,
                      thresholds: dict[str, float]) -> Path:
    config: dict[str, Any] = {
        "device_id": "demo-box",
        "state_dir": str(tmp / "state"),
        "model": {"path": str(model.resolve()), "classes": DEMO_CLASSES, "max_new_tokens": 40,
                  "thresholds": thresholds, "uncertain_band": 0.02},
        # a seed the demo model never trained on, at the resolution it was trained at
        "cameras": [{"name": "cam0", "source": "synthetic:seed=2026,size=128,max_defects=2", "fps": fps}],
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "prefix": "edge-inspect"},
        "metrics": {"port": metrics_port},
        "log_level": "warning",
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_daemon_and_print(config: Path, broker: Any, seconds: float) -> int:
    """Start the daemon, print each result for `seconds`, SIGTERM it; returns the number of results."""
    import paho.mqtt.client as mqtt

    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        payload = json.loads(msg.payload)
        with lock:
            received.append(payload)
        print_result(msg.topic, payload)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-dashboard", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("edge-inspect/#", qos=1)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    daemon = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        time.sleep(seconds)
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
        time.sleep(0.5)
        client.loop_stop()
        client.disconnect()
    typer.echo(f"daemon exited with code {code}")
    with lock:
        return sum(1 for p in received if p.get("schema") == "edge-inspect.result/1")


def print_result(topic: str, payload: dict[str, Any]) -> None:
    if payload.get("schema") != "edge-inspect.result/1":
        typer.echo(f"{topic}: {json.dumps(payload)}")
        return
    defects = ", ".join(f"{d['label']} {d['score']:.2f} @ {[round(v) for v in d['box']]}" for d in payload["defects"])
    typer.echo(f"seq {payload['seq']:>4}  {payload['camera']}  frame {payload['frame_id']:>4}  "
               f"{payload['verdict']:<9}  {payload['latency_ms']:7.1f} ms  {defects or '-'}")
