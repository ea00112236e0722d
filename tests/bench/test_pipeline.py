"""The station comparison's summary (`bench/pipeline.py`): what it reports from the windows it measured."""

from __future__ import annotations

from typing import Any

from bench.pipeline import summarise_station


def window(frames: int, station_cpu: float = 0.0) -> dict[str, Any]:
    client = {"seconds": 4.0, "updates": 13, "jpegs": 13, "thumbnails": 20, "mean_jpeg_kb": 16.0,
              "client_cpu_s": 0.1, "errors": {}}
    return {"frames": frames, "seconds": 4.0, "capture_dropped": 0, "process_cpu_s": 7.6,
            "inference_thread_waits": 500, "thread_cpu_s": {"MainThread": 3.6, "station": station_cpu},
            "client": client}


def test_the_ratio_is_of_summed_rates_and_the_station_cpu_is_its_threads() -> None:
    sides = {"off": [window(160), window(200)], "on": [window(152), window(190, station_cpu=0.08)]}
    summary = summarise_station(sides, {"off": [], "on": []}, {"added_mb": 9.6})
    assert summary["ratio_on_off"] == round(342 / 360, 3) and summary["meets_goal_ratio"] is False
    assert summary["on"]["station_cpu_s_per_s"] == 0.01 and summary["on"]["client"]["updates_per_s"] == 3.25


def test_without_fresh_processes_there_is_no_rss_figure_rather_than_a_crash() -> None:
    sides = {"off": [window(100)], "on": [window(99)]}
    summary = summarise_station(sides, {"off": [], "on": []}, {"added_mb": 9.6})
    assert summary["rss"] is None and summary["meets_goal_rss"] is None


def test_rss_is_fresh_on_minus_off_plus_the_imports() -> None:
    fresh = {side: [{"rss_mb": mb, "rss_max_mb": mb + 1, "frames": 100, "seconds": 10.0}] for side, mb in
             (("off", 490.0), ("on", 505.0))}
    summary = summarise_station({"off": [window(100)], "on": [window(99)]}, fresh, {"added_mb": 9.6})
    assert summary["rss"]["total_added_mb"] == 24.6 and summary["meets_goal_rss"] is True
