"""The run files contract: progress replaced atomically and read back, reports, runs listed newest first."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.runs import (
    RunProgress,
    new_run_id,
    read_progress,
    read_report,
    run_dirs,
    write_progress,
    write_recalibration_request,
)


def test_progress_round_trips_and_records_when_it_was_written(tmp_path: Path) -> None:
    write_progress(tmp_path / "r", RunProgress("r", stage="train", step=3, total_steps=10, loss=1.5, eta_s=7.0))
    back = read_progress(tmp_path / "r")
    assert back is not None and (back.stage, back.step, back.total_steps, back.loss) == ("train", 3, 10, 1.5)
    assert back.updated.endswith("Z") and not list((tmp_path / "r").glob(".*.tmp"))


def test_missing_or_garbled_files_read_as_none(tmp_path: Path) -> None:
    assert read_progress(tmp_path) is None and read_report(tmp_path) is None
    (tmp_path / "progress.json").write_text("{half")
    (tmp_path / "report.json").write_text("[1, 2]")
    assert read_progress(tmp_path) is None and read_report(tmp_path) is None


def test_run_folders_are_listed_newest_first_and_strangers_ignored(tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    older, newer = new_run_id(t0), new_run_id(t0 + timedelta(seconds=1))
    for name in (older, newer, "notes"):
        (tmp_path / name).mkdir()
    assert [p.name for p in run_dirs(tmp_path)] == [newer, older]
    assert run_dirs(tmp_path / "absent") == []


def test_a_recalibration_request_is_one_whole_json_file_for_the_systemd_path_unit(tmp_path: Path) -> None:
    path = write_recalibration_request(tmp_path / "recalibrate.request", "new batch", "mqtt")
    request = json.loads(path.read_text())
    assert (request["reason"], request["via"]) == ("new batch", "mqtt")
    assert datetime.fromisoformat(request["requested_at"]).tzinfo is not None
    assert [p.name for p in tmp_path.iterdir()] == ["recalibrate.request"]  # no temporary file left behind
