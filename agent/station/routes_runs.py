"""The recalibration page and its API (technicians only; every change audited): start, watch and cancel a run, its
report with the plots from its run folder, promote / override / roll back, and the model history.

The page polls `GET /api/runs/{id}` while a run goes (progress.json is rewritten every few seconds, so polling once a
second shows everything there is). Promote needs the gate to have passed; override promotes a rejected candidate
only with the confirmation phrase typed and a reason, both in the audit log. Each switch reloads the daemon's model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from agent.runs import RUN_ID, read_report
from agent.station.auth import Session
from agent.station.guards import StationContext, check_csrf, field_errors, require_technician, station
from agent.station.pages import technician_page
from agent.station.promotion import (
    SwitchError,
    find_candidate,
    gate_passed,
    history,
    override_phrase,
    stored_candidate,
    switch,
)
from agent.station.runs import RunControl, RunRefused
from agent.store.model_store import ModelStore

runs = APIRouter(prefix="/api", dependencies=[Depends(require_technician), Depends(check_csrf)])
runs_page = APIRouter(include_in_schema=False)
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
LISTED_RUNS = 50
_control_lock = threading.Lock()


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: str = Field(max_length=200)
    reason: str = Field(min_length=3, max_length=500)


# ----- dependencies -------------------------------------------------------------------------------------------------
def run_control(request: Request, ctx: StationContext = Depends(station)) -> RunControl:
    """The app's one RunControl, made on first use (tests put their own in `app.state.runs` beforehand)."""
    with _control_lock:
        control: RunControl | None = getattr(request.app.state, "runs", None)
        if control is None:
            runs_dir = ctx.backend.runs_dir()
            if runs_dir is None:
                raise HTTPException(503, "recalibration is not available on this station (no state directory)")
            control = request.app.state.runs = RunControl(runs_dir)
        return control


def model_store(ctx: StationContext = Depends(station)) -> ModelStore:
    models = ctx.backend.models_dir()
    if models is None:
        raise HTTPException(503, "the model store is not available on this station (no state directory)")
    return ModelStore(models)


def known_run(run_id: str, control: RunControl = Depends(run_control)) -> str:
    if not RUN_ID.match(run_id) or not control.run_dir(run_id).is_dir():
        raise HTTPException(404, f"no recalibration run {run_id!r}")
    return run_id


def finished_report(run_id: str = Depends(known_run), control: RunControl = Depends(run_control)) -> dict[str, Any]:
    report = read_report(control.run_dir(run_id))
    if report is None:
        raise HTTPException(409, f"run {run_id} has no report yet (still running, or it died before writing one)")
    return report


# ----- runs ---------------------------------------------------------------------------------------------------------
@runs.get("/runs")
def list_runs(control: RunControl = Depends(run_control), ctx: StationContext = Depends(station)) -> dict[str, Any]:
    """The run going now (if any), whether one can start, and the newest runs with their outcome."""
    config = ctx.backend.config_path()
    return {"active": control.active(), "serving": ctx.backend.model_version(),
            "can_start": config is not None,
            "cannot_start": None if config is not None else "the daemon was started without a config file",
            "runs": [control.summary(run_id) for run_id in control.run_ids()[:LISTED_RUNS]]}


@runs.post("/runs", status_code=201)
def start_run(control: RunControl = Depends(run_control), session: Session = Depends(require_technician),
              ctx: StationContext = Depends(station)) -> dict[str, Any]:
    try:
        run_id = control.start(ctx.backend.config_path())
    except RunRefused as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.audit.record(session.user, session.role, "recalibration_start", f"run {run_id}")
    return control.summary(run_id)


@runs.get("/runs/{run_id}")
def run_detail(run_id: str = Depends(known_run), control: RunControl = Depends(run_control),
               store: ModelStore = Depends(model_store), ctx: StationContext = Depends(station)) -> dict[str, Any]:
    """The run's progress, its report once written, and which of promote/override the page may offer."""
    report = read_report(control.run_dir(run_id))
    passed = gate_passed(report) if report is not None else None
    candidate = find_candidate(store, control.run_dir(run_id), report) if report is not None else None
    trained = candidate is not None or (control.run_dir(run_id) / "candidate").is_dir()
    return {**control.summary(run_id), "report": report, "serving": ctx.backend.model_version(),
            "candidate_version": candidate,
            "can_promote": passed is True and trained, "can_override": passed is False and trained,
            "override_phrase": override_phrase(run_id)}


@runs.post("/runs/{run_id}/cancel")
def cancel_run(run_id: str = Depends(known_run), control: RunControl = Depends(run_control),
               session: Session = Depends(require_technician), ctx: StationContext = Depends(station)
               ) -> dict[str, Any]:
    try:
        control.cancel(run_id)
    except RunRefused as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.audit.record(session.user, session.role, "recalibration_cancel", f"run {run_id}")
    return control.summary(run_id)


@runs.get("/runs/{run_id}/files/{path:path}")
def run_file(path: str, run_id: str = Depends(known_run), control: RunControl = Depends(run_control)) -> Response:
    """An image (PR curves, confusion matrix, frames) from the run's folder; nothing outside it, nothing else."""
    root = control.run_dir(run_id).resolve()
    media_type = IMAGE_TYPES.get(Path(path).suffix.lower())
    try:
        target = (root / path).resolve()
    except (OSError, ValueError):
        target = root
    if media_type is None or not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(404, f"run {run_id} has no image {path!r}")
    return FileResponse(target, media_type=media_type)


# ----- switching the served model -----------------------------------------------------------------------------------
@runs.post("/runs/{run_id}/promote")
def promote(run_id: str = Depends(known_run), report: dict[str, Any] = Depends(finished_report),
            control: RunControl = Depends(run_control), store: ModelStore = Depends(model_store),
            session: Session = Depends(require_technician), ctx: StationContext = Depends(station)) -> dict[str, Any]:
    """Serve the run's candidate; only when the gate passed (a rejected one needs an override)."""
    if gate_passed(report) is not True:
        raise HTTPException(409, f"run {run_id}: the gate did not pass, so its candidate can only be promoted by an "
                                 "override")
    return switch_audited(ctx, session, "promote", run_id,
                          lambda s: s.promote(stored_candidate(s, control.run_dir(run_id), report)), store)


@runs.post("/runs/{run_id}/override")
def override(body: OverrideIn, run_id: str = Depends(known_run), report: dict[str, Any] = Depends(finished_report),
             control: RunControl = Depends(run_control), store: ModelStore = Depends(model_store),
             session: Session = Depends(require_technician), ctx: StationContext = Depends(station)) -> Any:
    """Promote a candidate the gate rejected: the technician typed the phrase shown on the page and gave a reason."""
    if gate_passed(report) is not False:
        raise HTTPException(409, f"run {run_id}: only a candidate the gate rejected needs an override")
    phrase = override_phrase(run_id)
    if body.confirm.strip() != phrase:
        return field_errors([{"field": "confirm", "message": f"type {phrase!r} exactly to confirm the override"}])
    reason = " ".join(body.reason.split())
    note = {"override": {"by": session.user, "reason": reason}}
    gate_reasons = (report.get("gate") or {}).get("reasons") or (report.get("gate") or {}).get("failures") or []
    return switch_audited(ctx, session, "override", run_id,
                          lambda s: s.promote(stored_candidate(s, control.run_dir(run_id), report, note)), store,
                          reason=reason, gate=gate_reasons)


@runs.post("/models/rollback")
def rollback(store: ModelStore = Depends(model_store), session: Session = Depends(require_technician),
             ctx: StationContext = Depends(station)) -> dict[str, Any]:
    """Serve the previous version again (current and previous swap)."""
    return switch_audited(ctx, session, "rollback", None, lambda s: s.rollback(), store)


def switch_audited(ctx: StationContext, session: Session, action: str, run_id: str | None,
                   change: Callable[[ModelStore], Any], store: ModelStore, **details: Any) -> dict[str, Any]:
    """Switch and reload (promotion.switch); audit what happened, failures included (409 with the reason)."""
    run = {"run": run_id} if run_id else {}
    try:
        result = switch(store, change, ctx.backend.reload_model)
    except SwitchError as exc:
        ctx.audit.record(session.user, session.role, f"{action}_failed", None, **run, error=str(exc), **details)
        raise HTTPException(409, str(exc)) from None
    ctx.audit.record(session.user, session.role, action, f"model {result['current'] or 'base'}", **run,
                     previous=result["previous"], serving=result["serving"], **details)
    return result


@runs.get("/models")
def models(store: ModelStore = Depends(model_store), ctx: StationContext = Depends(station)) -> dict[str, Any]:
    """The model history: every stored version with its metrics, current/previous/serving marked."""
    pointers = store.pointers()
    return {"serving": ctx.backend.model_version(), "current": pointers["current"],
            "previous": pointers["previous"], "versions": history(store, ctx.backend.model_version())}


# ----- the page -----------------------------------------------------------------------------------------------------
@runs_page.get("/runs")
def runs_html(request: Request, ctx: StationContext = Depends(station)) -> Response:
    return technician_page(request, ctx, "runs.html")
