"""Starting the OPC UA server inside the daemon and feeding it; imports asyncua only when `opcua.enabled`.

The daemon calls `start_opcua` at start-up, `OpcUaHost.results` after each stored batch (results thread) and
`OpcUaHost.stop` at shutdown; the trigger handshake's state reaches it as a `Handshake` state listener. A server
that cannot start (port taken, bad certificate) is logged and the daemon inspects without it, like the station.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from agent.config.opcua import OpcUaConfig
from agent.handshake import Handshake
from agent.inspected import Inspected
from agent.station.promotion import SwitchError, switch
from agent.store.files import StoreError
from agent.store.model_store import ModelStore

if TYPE_CHECKING:
    from agent.opcua.server import OpcUaServer

log = structlog.get_logger("agent.opcua")


class OpcUaHost:
    """The running server as the daemon sees it: results in, stop."""

    def __init__(self, server: OpcUaServer, served_model: str) -> None:
        self.server = server
        self._job = served_model

    def results(self, items: Sequence[Inspected], seqs: Sequence[int | None]) -> None:
        """The stored results of a batch (seq None: the outbox refused it, so the line gets no result for it)."""
        from agent.opcua.space import ResultView

        for item, seq in zip(items, seqs, strict=True):
            if seq is None:
                continue
            if item.model != self._job:  # a reload (SelectJob, cmd/reload, the station) changed the model
                self._job = item.model
                self.server.set_job(item.model)
            f = item.frame
            self.server.add_result(ResultView(
                f.camera, str(seq), f.part_id or "", item.decision.verdict,
                json.dumps(item.defects_json()), item.latency_ms, f.captured_at))

    def stop(self) -> None:
        self.server.stop()


@dataclass(frozen=True)
class DaemonParts:
    """What the server needs of the daemon (the daemon's settings, without importing agent.config: no cycle)."""

    config: OpcUaConfig
    device_id: str
    cameras: dict[str, str]  # name -> mode
    state_dir: Path
    pinned_adapter: Callable[[], Path | None]  # model.adapter (reloadable): the config, not the store, names it
    handshake: Handshake
    reload_model: Callable[[], str]  # serve the store's current version; returns the served model
    served_model: str


def start_opcua(parts: DaemonParts) -> OpcUaHost | None:
    """The running OPC UA server, or None when disabled or it could not start (logged with the reason)."""
    if not parts.config.enabled:
        return None
    from agent.opcua.server import OpcUaServer

    store = ModelStore.in_state_dir(parts.state_dir)
    server = OpcUaServer(parts.config, parts.device_id, parts.cameras, parts.handshake.trigger,
                         job_switch(parts.pinned_adapter, store, parts.reload_model), store.versions)
    try:
        server.start()
    except Exception as exc:  # e.g. the port is taken: inspection goes on without OPC UA
        log.error("opcua server not started; the daemon inspects without it", endpoint=server.endpoint,
                  error=str(exc))
        server.stop()
        return None
    parts.handshake.state_listeners.append(server.update_state)
    server.set_job(parts.served_model)
    return OpcUaHost(server, parts.served_model)


def job_switch(pinned_adapter: Callable[[], Path | None], store: ModelStore, reload_model: Callable[[], str]
               ) -> Callable[[str], str]:
    """SelectJob: make a model store version current and serve it (switched back when it does not load)."""

    def select(version: str) -> str:
        if (adapter := pinned_adapter()) is not None:
            raise RuntimeError(f"model.adapter ({adapter}) pins the served adapter in the config; "
                               "SelectJob switches the model store's current version")
        if version not in store.versions():
            raise LookupError(f"Job: no model version {version!r} in the store; versions: {store.versions()}")
        try:
            return str(switch(store, lambda s: s.promote(version), reload_model)["serving"])
        except (SwitchError, StoreError) as exc:
            raise RuntimeError(str(exc)) from exc

    return select
