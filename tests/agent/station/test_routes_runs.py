"""The recalibration API: technicians only, CSRF on every change, each change audited; start / watch / cancel a run
(fake run processes), its report and images (nothing outside its folder), promote, override, rollback, history."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.runs import RunProgress, write_progress
from agent.station.app import create_app
from agent.station.audit import AuditLog
from agent.station.backend import StaticBackend
from agent.station.guards import CSRF_HEADER
from agent.station.live import LiveBoard
from agent.station.runs import RunControl
from agent.store.model_store import ModelStore
from tests.agent.station.conftest import Station, make_station, station_config
from tests.agent.station.fake_run import write_report
from tests.agent.station.test_runs import fake_command, wait_for
from tests.agent.store.helpers import add, new_store

PASSED = "20250102T030405000000Z"
REJECTED = "20250103T030405000000Z"


class Line(Station):
    store: ModelStore
    runs_dir: Path

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers=self.csrf(), **kwargs)


def line_station(tmp_path: Path, config_file: Path | None, scenario: str = "reject") -> Line:
    store = new_store(tmp_path)  # state in tmp_path/state, base model tmp_path/base
    backend = StaticBackend(version="base", config_file=config_file, state_dir=tmp_path / "state",
                            on_reload=lambda: f"base+{store.current()}" if store.current() else "base")
    audit = AuditLog.in_state_dir(tmp_path / "state")
    app = create_app(station_config(), backend, LiveBoard(), audit)
    runs_dir = tmp_path / "state" / "recalibration"
    app.state.runs = RunControl(runs_dir, fake_command(runs_dir, scenario, steps=3, step_s=0.1))
    line = Line(app, TestClient(app), LiveBoard(), backend, audit.path)
    line.store, line.runs_dir = store, runs_dir
    return line


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Line]:
    made = line_station(tmp_path, tmp_path / "config.yaml")
    with made.client:
        made.login("tech")
        yield made


def finished_run(line: Line, run_id: str, passed: bool, stored: bool = False) -> dict[str, Any]:
    run_dir = line.runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    candidate = None
    if stored:  # what the real run does when the gate passes: store and promote (the daemon is not reloaded)
        candidate = add(line.store, line.runs_dir.parent, f"run-{run_id}")
        line.store.promote(candidate)
    write_progress(run_dir, RunProgress(run_id, state="finished", stage="report", pid=0))
    return write_report(run_dir, passed, candidate)


# ----- who may do what ----------------------------------------------------------------------------------------------
def test_viewers_get_neither_the_page_nor_the_api(line: Line) -> None:
    finished_run(line, PASSED, passed=True)
    line.client.post("/api/logout", headers=line.csrf())
    line.login("view")
    assert line.client.get("/runs", follow_redirects=False).headers["location"] == "/"
    for method, path in [("GET", "/api/runs"), ("POST", "/api/runs"), ("GET", f"/api/runs/{PASSED}"),
                         ("POST", f"/api/runs/{PASSED}/promote"), ("POST", "/api/models/rollback"),
                         ("GET", "/api/models"), ("GET", f"/api/runs/{PASSED}/files/current/pr_curves.png")]:
        response = line.client.request(method, path, headers=line.csrf())
        assert response.status_code == 403 and "technician" in response.json()["detail"], (method, path)
    assert line.runs_dir.joinpath(PASSED).is_dir() and len(list(line.runs_dir.iterdir())) == 1


def test_the_page_is_for_technicians_and_linked_from_the_live_page(line: Line) -> None:
    page = line.client.get("/runs")
    assert page.status_code == 200 and 'id="start-run"' in page.text and "/static/runs.js" in page.text
    assert 'href="/runs"' in line.client.get("/").text
    assert line.client.get("/static/runs.js").status_code == line.client.get("/static/runs.css").status_code == 200
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in page.text
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) is None  # the CSP forbids inline scripts
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert all(a.startswith("/") and not a.startswith("//") for a in assets), assets


@pytest.mark.parametrize("path", ["/api/runs", f"/api/runs/{REJECTED}/cancel", f"/api/runs/{PASSED}/promote",
                                  f"/api/runs/{REJECTED}/override", "/api/models/rollback"])
def test_changes_without_the_csrf_token_are_refused_and_change_nothing(line: Line, path: str) -> None:
    finished_run(line, PASSED, passed=True)
    finished_run(line, REJECTED, passed=False)
    response = line.client.post(path, json={"confirm": f"override {REJECTED}", "reason": "because"})
    assert response.status_code == 403 and CSRF_HEADER in response.json()["detail"]
    assert sorted(p.name for p in line.runs_dir.iterdir()) == [PASSED, REJECTED]
    assert line.store.versions() == [] and line.backend.reloads == 0 and line.audit_entries("login") != []
    assert [e["action"] for e in map(json.loads, line.audit_lines())] == ["login"]


def test_without_a_state_dir_the_api_says_recalibration_is_unavailable(tmp_path: Path) -> None:
    station = make_station(tmp_path)
    with station.client:
        station.login("tech")
        response = station.client.get("/api/runs")
        assert response.status_code == 503 and "not available" in response.json()["detail"]


# ----- running ------------------------------------------------------------------------------------------------------
def test_a_run_starts_is_watched_to_its_report_and_is_audited(line: Line) -> None:
    started = line.post("/api/runs")
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    again = line.post("/api/runs")
    assert again.status_code == 409 and f"run {run_id} is still going" in again.json()["detail"]
    assert line.client.get("/api/runs").json()["active"] == run_id
    wait_for(lambda: line.client.get(f"/api/runs/{run_id}").json()["state"] == "finished")
    detail = line.client.get(f"/api/runs/{run_id}").json()
    assert detail["report"]["gate"]["passed"] is False and detail["can_override"] and not detail["can_promote"]
    assert detail["override_phrase"] == f"override {run_id}" and detail["serving"] == "base"
    listed = line.client.get("/api/runs").json()
    assert listed["active"] is None and [r["run_id"] for r in listed["runs"]] == [run_id]
    (entry,) = line.audit_entries("recalibration_start")
    assert (entry["who"], entry["role"], entry["target"]) == ("tech", "technician", f"run {run_id}")


def test_without_a_config_file_a_run_is_refused_with_the_reason(tmp_path: Path) -> None:
    line = line_station(tmp_path, config_file=None)
    with line.client:
        line.login("tech")
        assert line.client.get("/api/runs").json()["can_start"] is False
        response = line.post("/api/runs")
        assert response.status_code == 409 and "started without a config file" in response.json()["detail"]
        assert line.audit_entries("recalibration_start") == [] and not line.runs_dir.exists()


def test_a_run_is_cancelled_by_a_technician_and_audited(tmp_path: Path) -> None:
    line = line_station(tmp_path, tmp_path / "config.yaml", scenario="hang")
    with line.client:
        line.login("tech")
        run_id = line.post("/api/runs").json()["run_id"]
        wait_for(lambda: line.client.get(f"/api/runs/{run_id}").json()["step"] >= 1)
        assert line.post(f"/api/runs/{run_id}/cancel").status_code == 200
        wait_for(lambda: line.client.get(f"/api/runs/{run_id}").json()["state"] == "cancelled")
        again = line.post(f"/api/runs/{run_id}/cancel")
        assert again.status_code == 409 and "is not running" in again.json()["detail"]
        assert len(line.audit_entries("recalibration_cancel")) == 1


def test_unknown_and_malformed_run_ids_are_404(line: Line) -> None:
    for run_id in ("20990101T000000000000Z", "nope", "..", "%2e%2e"):
        assert line.client.get(f"/api/runs/{run_id}").status_code == 404, run_id


# ----- the report's images ------------------------------------------------------------------------------------------
def test_report_images_are_served_from_the_run_folder_only(line: Line, tmp_path: Path) -> None:
    report = finished_run(line, PASSED, passed=True)
    image = line.client.get(f"/api/runs/{PASSED}/files/{report['files']['candidate_pr_curves']}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    (tmp_path / "secret.png").write_bytes(b"\x89PNG outside the run folder")
    os.symlink(tmp_path / "secret.png", line.runs_dir / PASSED / "link.png")
    for path in ("../../../secret.png", "..%2F..%2F..%2Fsecret.png", "%2e%2e/%2e%2e/%2e%2e/secret.png",
                 f"{tmp_path}/secret.png", "/" + str(tmp_path / "secret.png"), "link.png", "report.json",
                 "candidate/adapter_model.safetensors", "missing.png", "current"):
        response = line.client.get(f"/api/runs/{PASSED}/files/{path}")
        assert response.status_code == 404 and b"outside" not in response.content, path


# ----- promote, override, rollback ----------------------------------------------------------------------------------
def test_promote_serves_the_candidate_the_run_stored_and_is_audited(line: Line) -> None:
    report = finished_run(line, PASSED, passed=True, stored=True)
    assert line.client.get(f"/api/runs/{PASSED}").json()["can_promote"] is True
    response = line.post(f"/api/runs/{PASSED}/promote")
    assert response.status_code == 200, response.text
    assert response.json() == {"current": report["candidate"], "previous": None,
                               "serving": f"base+{report['candidate']}"}
    assert line.backend.reloads == 1
    assert line.client.get("/api/cameras").json()["model"] == f"base+{report['candidate']}"
    (entry,) = line.audit_entries("promote")
    assert (entry["who"], entry["target"], entry["run"]) == ("tech", f"model {report['candidate']}", PASSED)


def test_promote_adds_a_candidate_only_in_the_run_folder(line: Line) -> None:
    finished_run(line, PASSED, passed=True)
    assert line.post(f"/api/runs/{PASSED}/promote").json()["current"] == "v0001"
    assert line.store.manifest("v0001").extra["recalibration_run"] == PASSED


def test_a_rejected_candidate_is_not_promoted_without_an_override(line: Line) -> None:
    finished_run(line, REJECTED, passed=False)
    response = line.post(f"/api/runs/{REJECTED}/promote")
    assert response.status_code == 409 and "override" in response.json()["detail"]
    assert line.store.versions() == [] and line.backend.reloads == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"confirm": "override", "reason": "new lighting on line 2"}, "confirm"),
    ({"confirm": "", "reason": "new lighting on line 2"}, "confirm"),
    ({"confirm": f"override {REJECTED}", "reason": ""}, "reason"),
    ({"confirm": f"override {REJECTED}"}, "reason"),
    ({"confirm": f"override {REJECTED}", "reason": "x" * 501}, "reason"),
    ({"confirm": f"override {REJECTED}", "reason": "ok reason", "force": True}, "force"),
])
def test_an_override_needs_the_typed_phrase_and_a_reason(line: Line, body: dict[str, Any], field: str) -> None:
    finished_run(line, REJECTED, passed=False)
    response = line.post(f"/api/runs/{REJECTED}/override", json=body)
    assert response.status_code == 422 and [e["field"] for e in response.json()["errors"]] == [field]
    assert line.store.versions() == [] and line.backend.reloads == 0 and line.audit_entries("override") == []


def test_an_override_promotes_the_rejected_candidate_and_logs_why(line: Line) -> None:
    finished_run(line, REJECTED, passed=False)
    body = {"confirm": f" override {REJECTED} ", "reason": "golden set  predates the new lighting"}
    response = line.post(f"/api/runs/{REJECTED}/override", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["serving"] == "base+v0001" and line.store.current() == "v0001"
    (entry,) = line.audit_entries("override")
    assert entry["reason"] == "golden set predates the new lighting" and entry["run"] == REJECTED
    assert any("hole" in reason for reason in entry["gate"])
    assert line.store.manifest("v0001").extra["override"] == {"by": "tech", "reason": entry["reason"]}
    assert line.post(f"/api/runs/{PASSED}/override", json=body).status_code == 404
    finished_run(line, PASSED, passed=True)
    refused = line.post(f"/api/runs/{PASSED}/override", json={**body, "confirm": f"override {PASSED}"})
    assert refused.status_code == 409 and "only a candidate the gate rejected" in refused.json()["detail"]


def test_rollback_serves_the_previous_version_and_is_audited(line: Line) -> None:
    refused = line.post("/api/models/rollback")
    assert refused.status_code == 409 and "nothing to roll back to" in refused.json()["detail"]
    assert line.audit_entries("rollback_failed")[0]["error"].startswith("nothing to roll back to")
    first, second = add(line.store, line.runs_dir.parent, "a"), add(line.store, line.runs_dir.parent, "b", 2.0)
    line.store.promote(first)
    line.store.promote(second)
    response = line.post("/api/models/rollback")
    assert response.json() == {"current": first, "previous": second, "serving": f"base+{first}"}
    assert line.audit_entries("rollback")[0]["target"] == f"model {first}"
    models = line.client.get("/api/models").json()
    assert (models["current"], models["previous"], models["serving"]) == (first, second, f"base+{first}")
    assert [(r["version"], r["serving"], r["previous"]) for r in models["versions"]] == [(second, False, True),
                                                                                      (first, True, False)]


def test_rollback_after_the_first_promote_serves_the_base_model(line: Line) -> None:
    first = add(line.store, line.runs_dir.parent, "a")
    line.store.promote(first)
    response = line.post("/api/models/rollback")
    assert response.status_code == 200, response.text
    assert response.json() == {"current": None, "previous": first, "serving": "base"}
    assert line.audit_entries("rollback")[0]["target"] == "model base"


def test_a_model_that_does_not_load_is_not_left_current(line: Line) -> None:
    serving = add(line.store, line.runs_dir.parent, "serving")
    line.store.promote(serving)
    finished_run(line, PASSED, passed=True)

    def broken() -> str:
        raise RuntimeError("adapter does not fit the base model")

    line.backend.on_reload = broken
    response = line.post(f"/api/runs/{PASSED}/promote")
    assert response.status_code == 409 and "does not fit" in response.json()["detail"]
    assert line.store.current() == serving and line.store.versions() == [serving, "v0002"]
    assert line.audit_entries("promote_failed")[0]["run"] == PASSED and line.audit_entries("promote") == []


# ----- the daemon's side --------------------------------------------------------------------------------------------
def test_the_daemon_hands_the_station_its_config_run_folder_store_and_reload(tmp_path: Path) -> None:
    from agent.config import load_settings
    from agent.daemon import Daemon
    from tests.fixtures.daemon import write_config

    (tmp_path / "model").mkdir()
    config = write_config(tmp_path, tmp_path / "model", station={"port": 0},
                          recalibration={"work_dir": str(tmp_path / "runs")})
    daemon = Daemon(load_settings(config), config_path=config)
    daemon.detector = SimpleNamespace(version="model+v0001")  # type: ignore[assignment]
    daemon.queue = None  # type: ignore[assignment]
    reloads: list[str] = []

    def reload(scope: str = "all") -> dict[str, Any]:
        reloads.append(scope)
        return {}

    daemon.reload = reload  # type: ignore[method-assign,assignment]
    daemon._start_station()
    assert daemon.station_link is not None and daemon.station_link.server is not None
    try:
        backend = daemon.station_link.server.app.state.station.backend
        assert backend.config_path() == config and backend.runs_dir() == tmp_path / "runs"
        assert backend.models_dir() == Path(daemon.settings.state_dir) / "models"
        assert backend.reload_model() == "model+v0001" and reloads == ["model"]
    finally:
        daemon.station_link.stop()
