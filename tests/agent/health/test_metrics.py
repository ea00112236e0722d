"""Metrics scraped over HTTP from the loopback port, in the Prometheus text format."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.health.metrics import Metrics


@pytest.fixture
def served() -> Iterator[tuple[Metrics, int]]:
    metrics = Metrics()
    port = metrics.serve("127.0.0.1", 0)
    yield metrics, port
    metrics.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_camera_counters_are_read_at_scrape_time(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    counters = {"frames": 10, "dropped": 2, "reconnects": 1, "corrupt": 3, "open_failures": 0, "fps": 9.5,
                "online": 1}
    metrics.watch_camera("cam0", lambda: counters)
    first = scrape(port)
    assert first[("edge_inspect_camera_frames_total", (("camera", "cam0"),))] == 10
    assert first[("edge_inspect_camera_dropped_total", (("camera", "cam0"),))] == 2
    assert first[("edge_inspect_camera_reconnects_total", (("camera", "cam0"),))] == 1
    assert first[("edge_inspect_camera_corrupt_total", (("camera", "cam0"),))] == 3
    assert first[("edge_inspect_camera_fps", (("camera", "cam0"),))] == 9.5
    assert first[("edge_inspect_camera_online", (("camera", "cam0"),))] == 1
    counters["frames"] = 25
    assert scrape(port)[("edge_inspect_camera_frames_total", (("camera", "cam0"),))] == 25
    metrics.forget_camera("cam0")
    assert ("edge_inspect_camera_frames_total", (("camera", "cam0"),)) not in scrape(port)


def test_pipeline_numbers_show_up(served: tuple[Metrics, int]) -> None:
    metrics, port = served
    metrics.observe_batch(0.03, frames=4)
    metrics.observe_batch(0.3, frames=1)
    metrics.outbox_depth.set(7)
    metrics.queue_depth.set(12)
    metrics.mqtt_reconnects.inc()
    metrics.results.labels(camera="cam0", verdict="fail").inc()
    samples = scrape(port)
    assert samples[("edge_inspect_inference_latency_seconds_count", ())] == 2
    assert samples[("edge_inspect_inference_latency_seconds_bucket", (("le", "0.05"),))] == 1
    assert samples[("edge_inspect_inference_latency_seconds_sum", ())] == pytest.approx(0.33)
    assert samples[("edge_inspect_outbox_depth", ())] == 7
    assert samples[("edge_inspect_learning_queue_depth", ())] == 12
    assert samples[("edge_inspect_mqtt_reconnects_total", ())] == 1
    assert samples[("edge_inspect_results_total", (("camera", "cam0"), ("verdict", "fail")))] == 1


def test_a_taken_port_is_a_clear_error(served: tuple[Metrics, int]) -> None:
    _, port = served
    with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
        Metrics().serve("127.0.0.1", port)


def test_two_instances_do_not_share_state() -> None:
    a, b = Metrics(), Metrics()
    a.mqtt_reconnects.inc()
    assert b.registry.get_sample_value("edge_inspect_mqtt_reconnects_total") == 0
