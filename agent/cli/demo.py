"""`edge-inspect demo` (what `make demo` runs): the whole product on one machine.

It builds (or reuses) the tiny demo model trained on synthetic defects (`edge-inspect model demo` in a child
process, which also writes its per-class thresholds.json), starts a private Mosquitto on a free port,
runs `edge-inspect run` on a `synthetic:` camera against it, prints every result message a subscriber receives, and
prints the station's URL and a login made up for the run, and stops everything cleanly (SIGTERM: the daemon drains
its outbox and publishes `offline`). Run from a terminal, it keeps the daemon and its station up after the ~30 s of
printed results until Ctrl-C, so the technician's pages can be tried (`--stay/--no-stay` overrides).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml
from typer.core import TyperGroup

from agent.cli.plugins import ENTRY_POINT_GROUP, unavailable_plugins

DEMO_CLASSES = ["scratch", "hole", "stain"]
PREFERRED_PORT = 8080  # the station's default port, when nothing else holds it
STATION_START_S = 120.0  # how long the demo waits for the daemon's station to answer before saying it did not


def demo(
    ctx: typer.Context,
    model: Path = typer.Option(Path("models/demo"), "--model", help="demo model directory (built when missing)"),
    seconds: float = typer.Option(30.0, "--seconds", min=1, help="how long to run the daemon"),
    steps: int = typer.Option(600, "--steps", min=1, help="training steps when the demo model must be built"),
    fps: float = typer.Option(4.0, "--fps", min=0.1, help="synthetic camera frame rate"),
    stay: bool | None = typer.Option(
        None, "--stay/--no-stay", help="after the printed results, keep the daemon and its station up until Ctrl-C "
        "(default: when run from a terminal)"),
) -> None:
    """Run the daemon on a synthetic camera against a private broker and print its results."""
    from agent.devbroker import Broker
    from agent.ports import free_port

    thresholds = ensure_demo_model(ctx, model, steps)
    typer.echo(f"per-class thresholds: {thresholds}")
    station = DemoStation.make()
    with tempfile.TemporaryDirectory(prefix="edge-inspect-demo-") as tmp:
        broker = Broker(workdir=Path(tmp) / "broker")
        broker.start()
        typer.echo(f"mosquitto listening on 127.0.0.1:{broker.port}")
        config = write_demo_config(Path(tmp), model, broker.port, free_port(), fps, station)
        try:
            count = run_daemon_and_print(config, broker, seconds, station,
                                         sys.stdin.isatty() if stay is None else stay)
        finally:
            broker.stop()
    typer.echo(f"demo finished: {count} result messages received")
    if count == 0:
        raise typer.Exit(code=1)


def ensure_demo_model(ctx: typer.Context, model: Path, steps: int) -> dict[str, float]:
    """Reuse a trained demo model, else train one now; returns its per-class thresholds (fitted once, kept)."""
    if (model / "demo_metrics.json").is_file() and (model / "model.safetensors").is_file():
        typer.echo(f"using demo model {model} ({json.loads((model / 'demo_metrics.json').read_text())['steps']} "
                   "training steps)")
    else:
        train_demo_model(ctx, model, steps)
    thresholds_file = model / "thresholds.json"
    if not thresholds_file.is_file():  # a model trained before `model demo` wrote its thresholds
        typer.echo(f"error: {model} has no thresholds.json; train it again with "
                   f"`edge-inspect model demo --out {model}` (which fits and writes them)", err=True)
        raise typer.Exit(code=1)
    return {k: float(v) for k, v in json.loads(thresholds_file.read_text()).items()}


def train_demo_model(ctx: typer.Context, model: Path, steps: int) -> None:
    """`edge-inspect model demo` in a child process: training lives in finetune and calibration, which the daemon's
    package may not import; that command also fits the thresholds and writes thresholds.json."""
    if not has_command(ctx, "model", "demo"):
        typer.echo(f"error: no demo model in {model}, and `edge-inspect model demo`, which trains one, is not "
                   f"available here ({why_unavailable()}); install edge-inspect with its training dependencies "
                   "(`pip install -e .` in the source tree) or pass --model DIR with a trained demo model", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"training the demo model into {model} ({steps} steps; reused next time)")
    command = [sys.executable, "-m", "agent.cli", "model", "demo", "--out", str(model), "--steps", str(steps),
               "--seed", "0", "--threads", "0"]
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        typer.echo(f"error: training the demo model failed (`{' '.join(command[1:])}` exited with {code})", err=True)
        raise typer.Exit(code=1)


def has_command(ctx: typer.Context, group: str, name: str) -> bool:
    """Whether the app this command runs in has `group name` (a plugin that failed to import lacks its commands)."""
    root = ctx.find_root()
    found = root.command.get_command(root, group) if isinstance(root.command, TyperGroup) else None
    return isinstance(found, TyperGroup) and found.get_command(root, name) is not None


def why_unavailable() -> str:
    reasons = "; ".join(f"{name}: {reason}" for name, reason in unavailable_plugins().items())
    return reasons or f"no {ENTRY_POINT_GROUP} entry point provides it"


@dataclass(frozen=True)
class DemoStation:
    """The demo's station: port 8080 when it is free, and a technician login made up for this run."""

    port: int
    user: str
    password: str

    @classmethod
    def make(cls) -> DemoStation:
        from agent.ports import bindable, free_port

        return cls(PREFERRED_PORT if bindable(PREFERRED_PORT) else free_port(), "technician",
                   secrets.token_urlsafe(9))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def config(self) -> dict[str, Any]:
        from argon2 import PasswordHasher

        user = {"name": self.user, "role": "technician", "password_hash": PasswordHasher().hash(self.password)}
        return {"port": self.port, "users": [user]}

    def announce(self) -> None:
        typer.echo(f"station: {self.url}  (log in as {self.user!r} with password {self.password!r})")

    def announce_when_up(self, daemon: subprocess.Popen[bytes], timeout_s: float = STATION_START_S) -> bool:
        """Print the URL once the station answers: printed while the daemon still loads its model (5-15 s on two
        cores), the first click on it was refused."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and daemon.poll() is None:
            if self.answers():
                self.announce()
                return True
            time.sleep(0.25)
        typer.echo(f"station: {self.url} did not answer within {timeout_s:.0f} s (see the daemon's log above)",
                   err=True)
        return False

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "healthz", timeout=1) as response:
                return int(response.status) == 200
        except OSError:
            return False


def write_demo_config(tmp: Path, model: Path, broker_port: int, metrics_port: int, fps: float,
                      station: DemoStation) -> Path:
    config: dict[str, Any] = {
        "device_id": "demo-box",
        "state_dir": str(tmp / "state"),
        # no thresholds here: the daemon takes them from the model directory's thresholds.json
        "model": {"path": str(model.resolve()), "classes": DEMO_CLASSES, "max_new_tokens": 40,
                  "uncertain_band": 0.02},
        "station": station.config(),
        # a demo should give the technician frames to review within a minute or two, and short recalibrations; the
        # demo model is sure of most boxes, so a random 10 % of frames joins the band's doubtful ones (golden set)
        "queue": {"per_minute": 60, "random_rate": 0.1},
        "recalibration": {"epochs": 3, "max_minutes": 10},
        # a seed the demo model never trained on, at the resolution it was trained at
        "cameras": [{"name": "cam0", "source": "synthetic:seed=2026,size=128,max_defects=2", "fps": fps}],
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "prefix": "edge-inspect"},
        "metrics": {"port": metrics_port},
        "log_level": "warning",
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_daemon_and_print(config: Path, broker: Any, seconds: float, station: DemoStation, stay: bool) -> int:
    """Start the daemon, print each result for `seconds` (then, with `stay`, keep it up until Ctrl-C), SIGTERM it;
    returns the number of results printed."""
    from agent.config import MqttConfig
    from agent.publish.client import close_client, connect_and_wait, create_client

    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    printing = threading.Event()
    printing.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        if not printing.is_set():
            return
        payload = json.loads(msg.payload)
        with lock:
            received.append(payload)
        print_result(msg.topic, payload)

    dashboard = MqttConfig(host="127.0.0.1", port=broker.port)
    client = create_client(dashboard, "demo-dashboard")
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("edge-inspect/#", qos=1)
    connect_and_wait(client, dashboard)
    daemon = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    station.announce_when_up(daemon)
    previous = interrupt_on_hangup_and_term()
    try:
        time.sleep(seconds)
        printing.clear()
        if stay:
            wait_for_ctrl_c(station)
    finally:
        restore_handlers(previous)
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=60)
        time.sleep(0.5)
        close_client(client)
    typer.echo(f"daemon exited with code {code}")
    with lock:
        return sum(1 for p in received if p.get("schema") == "edge-inspect.result/1")


def interrupt_on_hangup_and_term() -> dict[int, Any]:
    """A closed terminal (SIGHUP) or `kill` (SIGTERM) ends the demo like Ctrl-C, so the daemon and the broker it
    started are stopped too instead of being left behind; returns the handlers to restore (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    return {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}


def restore_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def wait_for_ctrl_c(station: DemoStation) -> None:
    """Keep the daemon and its station up for the person at the browser; Ctrl-C ends the demo cleanly."""
    typer.echo("results are no longer printed; the daemon keeps inspecting. Press Ctrl-C to stop.")
    station.announce()
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def print_result(topic: str, payload: dict[str, Any]) -> None:
    if payload.get("schema") != "edge-inspect.result/1":
        typer.echo(f"{topic}: {json.dumps(payload)}")
        return
    defects = ", ".join(f"{d['label']} {d['score']:.2f} @ {[round(v) for v in d['box']]}" for d in payload["defects"])
    typer.echo(f"seq {payload['seq']:>4}  {payload['camera']}  frame {payload['frame_id']:>4}  "
               f"{payload['verdict']:<9}  {payload['latency_ms']:7.1f} ms  {defects or '-'}")
