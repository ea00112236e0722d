"""sparkplug.json: bdSeq and the cursor survive restarts; a damaged file is set aside, never trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.sparkplug.state import NodeState, load_state, next_bdseq, save_state


def test_state_round_trips_and_bdseq_wraps(tmp_path: Path) -> None:
    path = tmp_path / "sparkplug.json"
    assert load_state(path) == NodeState(None, None)
    save_state(path, NodeState(255, 42))
    assert load_state(path) == NodeState(255, 42)
    assert [next_bdseq(None), next_bdseq(0), next_bdseq(254), next_bdseq(255)] == [0, 1, 255, 0]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"bdseq": 256, "cursor": 1}', '{"bdseq": 1, "cursor": -1}',
                                  '{"bdseq": true, "cursor": 1}'])
def test_a_damaged_state_file_is_set_aside(tmp_path: Path, text: str) -> None:
    path = tmp_path / "sparkplug.json"
    path.write_text(text)
    assert load_state(path) == NodeState(None, None)
    assert not path.exists() and (tmp_path / "sparkplug.json.corrupt").read_text() == text
