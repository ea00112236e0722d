"""`edge-inspect queue list|show|export|purge` against a queue the test fills."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.cli.queue import parse_duration
from agent.config import QueueConfig
from agent.learn.queue import LearningQueue
from agent.statedir import StateDir
from tests.agent.learn.test_queue import THRESHOLDS, frame, unsure

runner = CliRunner()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    queue = LearningQueue(StateDir(tmp_path / "state").queue, QueueConfig(per_minute=100))
    for i in range(3):
        assert queue.offer(frame(i, part_id=f"P-{i}"), unsure(), THRESHOLDS)
    queue.close()
    return tmp_path / "state"


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["queue", *args])
    return result.exit_code, result.output


def test_list_shows_every_entry(state_dir: Path) -> None:
    code, out = invoke("list", "--state-dir", str(state_dir), "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["part_id"] for r in rows] == ["P-0", "P-1", "P-2"]
    code, out = invoke("list", "--state-dir", str(state_dir))
    assert code == 0 and "3 entries" in out


def test_state_dir_comes_from_the_environment(state_dir: Path) -> None:
    result = runner.invoke(app, ["queue", "list", "--json"], env={"EDGE_INSPECT_STATE_DIR": str(state_dir)})
    assert result.exit_code == 0 and len(result.output.splitlines()) == 3


def test_show_prints_the_entry_and_unknown_ids_fail(state_dir: Path) -> None:
    code, out = invoke("show", "2", "--state-dir", str(state_dir))
    shown = json.loads(out)
    assert code == 0 and shown["id"] == 2 and shown["predictions"][0]["label"] == "scratch"
    assert Path(shown["path"]).is_file()
    code, out = invoke("show", "99", "--state-dir", str(state_dir))
    assert code == 1 and "99" in out


def test_export_writes_the_requested_format(state_dir: Path, tmp_path: Path) -> None:
    code, out = invoke("export", "--format", "jsonl", str(tmp_path / "ds"), "--state-dir", str(state_dir))
    assert code == 0 and "annotations.jsonl" in out
    lines = (tmp_path / "ds" / "annotations.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["prefix"] == "<OD>" for line in lines)
    code, _ = invoke("export", "--format", "coco", str(tmp_path / "coco"), "--state-dir", str(state_dir))
    assert code == 0 and len(json.loads((tmp_path / "coco" / "annotations.json").read_text())["images"]) == 3


def test_purge_needs_a_criterion_and_deletes(state_dir: Path) -> None:
    code, out = invoke("purge", "--state-dir", str(state_dir))
    assert code != 0 and "--all" in out
    code, out = invoke("purge", "--older-than", "soon", "--state-dir", str(state_dir))
    assert code != 0 and "soon" in out
    code, out = invoke("purge", "--older-than", "1d", "--state-dir", str(state_dir))
    assert code == 0 and "purged 0 entries" in out
    code, out = invoke("purge", "--all", "--state-dir", str(state_dir))
    assert code == 0 and "purged 3 entries" in out


def test_a_missing_queue_is_an_error_not_a_new_empty_queue(tmp_path: Path) -> None:
    code, out = invoke("list", "--state-dir", str(tmp_path / "nowhere"))
    assert code == 1 and "no learning queue" in out
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800),
                                                ("2w", 1209600), ("1.5h", 5400)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
