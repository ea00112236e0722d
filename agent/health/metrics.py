"""Prometheus metrics: one registry the pipeline updates, served over HTTP on a (loopback) port.

Camera counters are read at scrape time from callables the pipeline registers (`watch_camera`), so capture
threads never touch the metrics code; everything else is set or observed by the stage that owns the number.
All names start with `edge_inspect_`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CameraCounters = Callable[[], Mapping[str, float]]
# seconds; covers a Jetson at ~1 s per batch down to a desktop GPU at a few ms
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_CAMERA_COUNTERS = {
    "frames": "Frames captured",
    "dropped": "Frames dropped because the consumer was behind (latest frame wins)",
    "reconnects": "Times the source was reopened after it was lost",
    "corrupt": "Corrupt or empty frames skipped",
    "open_failures": "Failed attempts to open the source",
}
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_log = structlog.get_logger("agent.health")


class _CameraCollector(Collector):
    def __init__(self, cameras: dict[str, CameraCounters], lock: threading.Lock) -> None:
        self._cameras = cameras
        self._lock = lock

    def collect(self) -> Iterator[Any]:
        with self._lock:
            snapshots = {name: dict(read()) for name, read in self._cameras.items()}
        for key, help_text in _CAMERA_COUNTERS.items():
            family = CounterMetricFamily(f"edge_inspect_camera_{key}", help_text, labels=["camera"])
            for name, snap in snapshots.items():
                family.add_metric([name], float(snap.get(key, 0)))
            yield family
        fps = GaugeMetricFamily("edge_inspect_camera_fps", "Measured capture rate (frames/s)", labels=["camera"])
        online = GaugeMetricFamily("edge_inspect_camera_online", "1 while the camera delivers frames",
                                   labels=["camera"])
        for name, snap in snapshots.items():
            fps.add_metric([name], float(snap.get("fps", 0.0)))
            online.add_metric([name], float(snap.get("online", 0)))
        yield fps
        yield online


class Metrics:
    """The daemon's metrics. Create one, hand it to the stages, `serve()` it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.inference_latency = Histogram("edge_inspect_inference_latency_seconds",
                                           "Detector time per batch", buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("edge_inspect_batch_size", "Frames per detector batch",
                                    buckets=(1, 2, 4, 8, 16, 32), registry=r)
        self.results = Counter("edge_inspect_results", "Inspection results by verdict",
                               ["camera", "verdict"], registry=r)
        self.pipeline_dropped = Counter("edge_inspect_pipeline_dropped_frames",
                                        "Frames the pipeline skipped (e.g. stale when the detector was slow)",
                                        ["camera"], registry=r)
        self.outbox_depth = Gauge("edge_inspect_outbox_depth", "Results not yet acknowledged by the broker",
                                  registry=r)
        self.outbox_bytes = Gauge("edge_inspect_outbox_bytes", "Disk used by the result outbox", registry=r)
        self.queue_depth = Gauge("edge_inspect_learning_queue_depth", "Frames in the learning queue", registry=r)
        self.queue_bytes = Gauge("edge_inspect_learning_queue_bytes", "Disk used by the learning queue",
                                 registry=r)
        self.mqtt_connected = Gauge("edge_inspect_mqtt_connected", "1 while connected to the broker", registry=r)
        self.mqtt_reconnects = Counter("edge_inspect_mqtt_reconnects", "Reconnections to the broker", registry=r)
        self._cameras: dict[str, CameraCounters] = {}
        self._lock = threading.Lock()
        r.register(_CameraCollector(self._cameras, self._lock))
        self._server: Any = None

    def watch_camera(self, camera: str, read_counters: CameraCounters) -> None:
        """Report a camera's counters at each scrape; `read_counters()` returns frames, dropped, reconnects,
        corrupt, open_failures, fps and `online` (1/0), e.g. `{**worker.counters.snapshot(), "online": ...}`."""
        with self._lock:
            self._cameras[camera] = read_counters

    def forget_camera(self, camera: str) -> None:
        with self._lock:
            self._cameras.pop(camera, None)

    def observe_batch(self, seconds: float, frames: int) -> None:
        self.inference_latency.observe(seconds)
        self.batch_size.observe(frames)

    def report_stores(self, outbox_depth: int, outbox_bytes: int, queue_depth: int, queue_bytes: int,
                      mqtt_connected: bool) -> None:
        """The gauges of the outbox, the learning queue and the MQTT connection, after each results batch."""
        self.outbox_depth.set(outbox_depth)
        self.outbox_bytes.set(outbox_bytes)
        self.queue_depth.set(queue_depth)
        self.queue_bytes.set(queue_bytes)
        self.mqtt_connected.set(int(mqtt_connected))

    def serve(self, host: str = "127.0.0.1", port: int = 9108) -> int:
        """Start the HTTP endpoint in a background thread; returns the bound port (useful with port 0)."""
        if self._server is not None:
            raise RuntimeError("metrics endpoint already running")
        if host not in _LOOPBACK:
            _log.warning("metrics endpoint bound beyond loopback; firewall it", host=host, port=port)
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        self._server = server
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
