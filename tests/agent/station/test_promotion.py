"""Switching the served model from the station: candidates into the store once, a model that does not load switched
back, the history with its marks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.station.promotion import (
    SwitchError,
    find_candidate,
    gate_passed,
    history,
    override_phrase,
    serving_adapter,
    stored_candidate,
    switch,
)
from agent.store.model_store import ModelStore
from tests.agent.station.fake_run import AFTER, write_report
from tests.agent.store.helpers import add, new_store

RUN = "20250102T030405000000Z"


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return new_store(tmp_path)


def run_dir_with(tmp_path: Path, passed: bool, candidate: str | None = None) -> tuple[Path, dict]:
    run_dir = tmp_path / "state" / "recalibration" / RUN
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, write_report(run_dir, passed, candidate)


def test_a_candidate_is_added_once_with_the_runs_metrics_and_thresholds(store: ModelStore, tmp_path: Path) -> None:
    run_dir, report = run_dir_with(tmp_path, passed=False)
    assert find_candidate(store, run_dir, report) is None
    version = stored_candidate(store, run_dir, report, {"override": {"by": "tech", "reason": "new lighting"}})
    assert stored_candidate(store, run_dir, report) == find_candidate(store, run_dir, report) == version
    assert store.versions() == [version] and store.current() is None  # stored, not promoted
    manifest = store.manifest(version)
    assert manifest.thresholds == {"scratch": 0.42, "hole": 0.42, "stain": 0.42}
    assert manifest.metrics["map50"] == report["evaluation"]["candidate"]["map50"]
    assert manifest.metrics["golden_set"] == report["data"]["golden"]
    assert manifest.extra["recalibration_run"] == RUN and manifest.extra["override"]["by"] == "tech"


def test_an_overridden_candidate_keeps_the_score_calibration_its_thresholds_were_fitted_on(
        store: ModelStore, tmp_path: Path) -> None:
    from agent.detector.score_calibration import ClassCalibration, ScoreCalibration, manifest_calibration

    run_dir, report = run_dir_with(tmp_path, passed=False)
    calibration = ScoreCalibration({"scratch": ClassCalibration(True, 1.5, 2.0, "Platt scaling on 30 boxes")})
    report["thresholds"]["score_calibration"] = calibration.to_json()
    version = stored_candidate(store, run_dir, report, {"override": {"by": "tech", "reason": "new lighting"}})
    assert manifest_calibration(store.manifest(version).extra, version) == calibration


def test_the_version_a_run_stored_itself_is_used_as_it_is(store: ModelStore, tmp_path: Path) -> None:
    own = add(store, tmp_path, "own")
    run_dir, report = run_dir_with(tmp_path, passed=True, candidate=own)
    assert stored_candidate(store, run_dir, report) == own and store.versions() == [own]


def test_a_run_without_a_candidate_adapter_cannot_be_promoted(store: ModelStore, tmp_path: Path) -> None:
    run_dir = tmp_path / RUN
    run_dir.mkdir()
    with pytest.raises(SwitchError, match="left no candidate adapter"):
        stored_candidate(store, run_dir, {"outcome": "failed"})


def test_a_switch_reloads_and_reports_what_serves(store: ModelStore, tmp_path: Path) -> None:
    version = add(store, tmp_path, "a")
    result = switch(store, lambda s: s.promote(version), lambda: f"base+{version}")
    assert result == {"current": version, "previous": None, "serving": f"base+{version}"}


def test_a_model_that_does_not_load_is_switched_back_in_the_store(store: ModelStore, tmp_path: Path) -> None:
    first, second = add(store, tmp_path, "a"), add(store, tmp_path, "b", 2.0)
    store.promote(first)

    def broken() -> str:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(SwitchError, match=f"could not load {second} \\(CUDA out of memory\\).*keeps serving"):
        switch(store, lambda s: s.promote(second), broken)
    assert store.current() == first


def test_store_refusals_become_switch_errors(store: ModelStore) -> None:
    with pytest.raises(SwitchError, match="nothing to roll back to"):
        switch(store, lambda s: s.rollback(), lambda: "base")


def test_history_is_newest_first_with_its_marks(store: ModelStore, tmp_path: Path) -> None:
    first = add(store, tmp_path, "a", metrics=AFTER)
    second = add(store, tmp_path, "b", 2.0, extra={"recalibration_run": RUN, "override": {"by": "tech"}})
    store.promote(first)
    store.promote(second)
    rows = history(store, f"base+{first}")
    assert [r["version"] for r in rows] == [second, first]
    assert (rows[0]["current"], rows[0]["serving"], rows[0]["override"], rows[0]["run"]) == (True, False, True, RUN)
    assert (rows[1]["previous"], rows[1]["serving"], rows[1]["map50"]) == (True, True, AFTER["map50"])


def test_small_helpers() -> None:
    assert override_phrase(RUN) == f"override {RUN}"
    assert serving_adapter("demo+v0003") == "v0003" and serving_adapter("demo") is None
    assert gate_passed({"gate": {"passed": True}}) is True and gate_passed({"gate": {}}) is None
    assert gate_passed({"gate": {"passed": False}}) is False
