"""Switching the served model from the station: promote a run's candidate, override a rejected one, roll back, and
the model history. Every switch goes through the model store (verified, atomic) and then reloads the daemon's model;
a model that does not load is switched back in the store, so the store never names a model the daemon cannot serve.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.detector.score_calibration import MANIFEST_KEY
from agent.store.files import StoreError
from agent.store.model_store import AdapterEntry, ModelStore

CANDIDATE_DIR = "candidate"  # where a run writes its trained adapter, in its run folder
RUN_KEY = "recalibration_run"  # manifest field naming the run an adapter came from
_switching = threading.Lock()  # one switch at a time: a double click must not add or promote twice


class SwitchError(RuntimeError):
    """A promote/override/rollback that did not happen (or was undone); the message says why."""


def override_phrase(run_id: str) -> str:
    """What a technician types to promote a candidate the gate rejected."""
    return f"override {run_id}"


def serving_adapter(model_version: str) -> str | None:
    """The adapter label in a served version (`base+v0003` -> `v0003`; the bare base -> None)."""
    return model_version.split("+", 1)[1] if "+" in model_version else None


def gate_passed(report: dict[str, Any]) -> bool | None:
    """The gate's decision in a report: True, False, or None when the run never reached the gate."""
    gate = report.get("gate") or {}
    return bool(gate["passed"]) if "passed" in gate else None


def find_candidate(store: ModelStore, run_dir: Path, report: dict[str, Any]) -> str | None:
    """The store version of the run's candidate: the one the run stored itself, or one added for this run before."""
    version = report.get("candidate")
    if isinstance(version, str) and version in store.versions():
        return version
    for entry in store.list():
        if entry.manifest is not None and entry.manifest.extra.get(RUN_KEY) == run_dir.name:
            return entry.version
    return None


def stored_candidate(store: ModelStore, run_dir: Path, report: dict[str, Any],
                     extra: dict[str, Any] | None = None) -> str:
    """The run's candidate as a store version (`find_candidate`), else added now from the run folder with the
    run's golden-set metrics, fitted thresholds and score calibration in its manifest (and `extra`, e.g. who
    overrode the gate)."""
    found = find_candidate(store, run_dir, report)
    if found is not None:
        return found
    run_id = run_dir.name
    source = run_dir / CANDIDATE_DIR
    if not source.is_dir():
        raise SwitchError(f"run {run_id} left no candidate adapter (it ended before training finished)")
    candidate = (report.get("evaluation") or {}).get("candidate") or {}
    metrics = {key: candidate[key] for key in ("map", "map50", "per_class") if key in candidate}
    golden = (report.get("data") or {}).get("golden")
    if golden:  # as the run records it when it promotes by itself
        metrics["golden_set"] = golden
    fitted = report.get("thresholds") or {}
    thresholds = {name: float(fit["threshold"]) for name, fit in (fitted.get("classes") or {}).items()
                  if "threshold" in fit}
    scores = {MANIFEST_KEY: fitted[MANIFEST_KEY]} if MANIFEST_KEY in fitted else {}  # thresholds were fitted on them
    return store.add_adapter(source, parent=report.get("current"), metrics=metrics, thresholds=thresholds,
                             extra={RUN_KEY: run_id, **scores, **(extra or {})})


def switch(store: ModelStore, change: Callable[[ModelStore], Any], reload_model: Callable[[], str]
           ) -> dict[str, Any]:
    """Apply `change` (a promote or rollback) to the store, then reload the daemon's model. When the model does not
    load, the store is switched back and SwitchError says so (the old model kept serving all along)."""
    if not _switching.acquire(blocking=False):
        raise SwitchError("another promote or rollback is in progress; try again in a moment")
    try:
        before = store.pointers()
        change(store)
        after = store.pointers()
        try:
            served = reload_model()
        except Exception as exc:
            undone = after == before or _switch_back(store)
            note = "" if undone else f"; the store still names {after['current']} as current: roll back by hand"
            raise SwitchError(f"the daemon could not load {after['current'] or 'the base model'} ({exc}); "
                              f"the model it served keeps serving{note}") from exc
        return {"current": after["current"], "previous": after["previous"], "serving": served}
    except StoreError as exc:
        raise SwitchError(str(exc)) from exc
    finally:
        _switching.release()


def _switch_back(store: ModelStore) -> bool:
    """Swap current and previous back (the daemon still serves the old current); False when there is no previous."""
    try:
        store.rollback()
    except StoreError:
        return False
    return True


def history(store: ModelStore, model_version: str) -> list[dict[str, Any]]:
    """Every stored version, newest first, with its golden-set metrics and whether it is current/previous/serving."""
    serving = serving_adapter(model_version)
    return [history_row(entry, entry.version == serving) for entry in reversed(store.list())]


def history_row(entry: AdapterEntry, serving: bool) -> dict[str, Any]:
    manifest = entry.manifest
    metrics = manifest.metrics if manifest is not None else {}
    return {
        "version": entry.version, "current": entry.current, "previous": entry.previous, "serving": serving,
        "created_at": manifest.created_at if manifest else None, "parent": manifest.parent if manifest else None,
        "run": (manifest.extra.get(RUN_KEY) or manifest.run_id) if manifest else None,
        "map": metrics.get("map"), "map50": metrics.get("map50"), "per_class": metrics.get("per_class") or {},
        "override": bool(manifest.extra.get("override")) if manifest else False, "error": entry.error,
    }
