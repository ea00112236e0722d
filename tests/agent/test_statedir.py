"""The state directory layout: every file the daemon, CLI and recalibration share, named in one place."""

from __future__ import annotations

from pathlib import Path

from agent.statedir import StateDir


def test_paths_under_the_root() -> None:
    state = StateDir("/var/lib/edge-inspect")  # type: ignore[arg-type]  # a str from a config works too
    root = Path("/var/lib/edge-inspect")
    assert state.root == root and state.outbox == root / "outbox.sqlite3"
    assert (state.queue, state.queue_index) == (root / "queue", root / "queue" / "index.sqlite3")
    assert (state.models, state.recalibration) == (root / "models", root / "recalibration")
    # systemd/edge-inspect-recalibrate.path watches this exact file
    assert state.recalibrate_request == root / "recalibrate.request"


def test_nothing_is_created_until_asked(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "a" / "state")
    assert not state.root.exists()
    assert state.create() is state and state.root.is_dir() and list(state.root.iterdir()) == []
