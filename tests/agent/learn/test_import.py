"""`edge-inspect queue import`: reviewed COCO / Florence JSONL files mark queue frames labelled or rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.detector.loc import to_bins
from agent.learn.queue import LearningQueue
from agent.learn.review import entry_id_of
from agent.statedir import StateDir
from tests.agent.learn.helpers import THRESHOLDS, config, frame, unsure

runner = CliRunner()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A queue with three unsure frames (entries 1, 2, 3), each predicted as one scratch."""
    queue = LearningQueue(StateDir(tmp_path / "state").queue, config())
    for i in range(3):
        assert queue.offer(frame(i * 7), unsure(box=(10 + i, 12, 30, 40)), THRESHOLDS)
    queue.close()
    return tmp_path / "state"


def open_queue(state_dir: Path) -> LearningQueue:
    return LearningQueue(StateDir(state_dir).queue, config())


def import_file(state_dir: Path, path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["queue", "import", str(path), "--state-dir", str(state_dir)])
    return result.exit_code, result.output


def export(state_dir: Path, out: Path, fmt: str) -> Path:
    result = runner.invoke(app, ["queue", "export", str(out), "--format", fmt, "--state-dir", str(state_dir)])
    assert result.exit_code == 0, result.output
    return out / ("annotations.json" if fmt == "coco" else "annotations.jsonl")


def test_entry_ids_come_from_the_exported_frame_names_even_behind_tool_prefixes() -> None:
    assert entry_id_of("images/000000042.png") == 42
    assert entry_id_of("/data/upload/1/3f2a9c1e-000000042.png") == 42
    assert entry_id_of("images/frame.png") is None


def test_an_edited_coco_export_labels_frames_with_the_reviewed_boxes(state_dir: Path, tmp_path: Path) -> None:
    path = export(state_dir, tmp_path / "review", "coco")
    doc = json.loads(path.read_text())
    hole = next(c["id"] for c in doc["categories"] if c["name"] == "scratch")  # only 'scratch' was predicted
    doc["categories"].append({"id": 99, "name": "hole"})
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != 2]  # entry 2: reviewed defect-free
    for ann in doc["annotations"]:
        if ann["image_id"] == 1:
            ann.update(bbox=[5, 6, 20, 10], category_id=99)
    doc["images"][2]["status"] = "rejected"  # entry 3
    path.write_text(json.dumps(doc))
    code, out = import_file(state_dir, path)
    assert code == 0, out
    assert "2 labelled, 1 rejected" in out and hole
    queue = open_queue(state_dir)
    first, second, third = (queue.get(i) for i in (1, 2, 3))
    assert first.status == "labelled" and first.labels is not None
    assert first.labels.labels == ["hole"] and first.labels.xyxy.tolist() == [[5, 6, 25, 16]]
    assert second.status == "labelled" and second.labels is not None and len(second.labels) == 0
    assert third.status == "rejected"
    queue.close()


def test_a_jsonl_review_round_trips_and_unlisted_frames_stay_unlabelled(state_dir: Path, tmp_path: Path) -> None:
    path = export(state_dir, tmp_path / "review", "jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[0]["suffix"] = "stain<loc_100><loc_200><loc_500><loc_600>"
    path.write_text(json.dumps(lines[0]) + "\n")  # only entry 1 was reviewed
    code, out = import_file(state_dir, path)
    assert code == 0 and "1 labelled, 0 rejected" in out
    queue = open_queue(state_dir)
    labels = queue.get(1).labels
    assert labels is not None and labels.labels == ["stain"]
    assert to_bins(labels).tolist() == [[100, 200, 500, 600]]
    assert [queue.get(i).status for i in (2, 3)] == ["new", "new"]
    queue.close()


def test_errors_name_the_line_or_entry_and_nothing_is_applied(state_dir: Path, tmp_path: Path) -> None:
    good = {"image": "images/000000001.png", "prefix": "<OD>", "suffix": "hole<loc_1><loc_2><loc_30><loc_40>"}
    unknown_class = {"image": "images/000000002.png", "suffix": "dent<loc_1><loc_2><loc_30><loc_40>"}
    path = tmp_path / "review.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(unknown_class) + "\n{broken\n")
    code, out = import_file(state_dir, path)
    assert code == 1 and "line 3: malformed JSON" in out
    path.write_text(json.dumps(good) + "\n" + json.dumps(unknown_class) + "\n")
    code, out = import_file(state_dir, path)
    assert code == 1 and "line 2 (entry 2): unknown class(es) ['dent']" in out
    queue = open_queue(state_dir)
    assert queue.get(1).status == "new"  # the valid first line was not applied either
    queue.close()


def test_unknown_entries_and_boxes_off_the_frame_are_refused(state_dir: Path, tmp_path: Path) -> None:
    doc = {"images": [{"id": 1, "file_name": "images/000000001.png"}, {"id": 2, "file_name": "000000077.png"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [50, 50, 30, 30]}],
           "categories": [{"id": 1, "name": "scratch"}]}
    path = tmp_path / "review.json"
    path.write_text(json.dumps(doc))
    code, out = import_file(state_dir, path)
    assert code == 1
    assert "images[0] (entry 1): box [50.0, 50.0, 80.0, 80.0] is empty or outside the 64x64 frame" in out
    assert "images[1] (entry 77): no queue entry 77" in out


@pytest.mark.parametrize("fmt", ["coco", "jsonl"])
def test_an_untouched_export_never_becomes_labels_and_the_command_says_so(state_dir: Path, tmp_path: Path,
                                                                          fmt: str) -> None:
    path = export(state_dir, tmp_path / "review", fmt)
    code, out = import_file(state_dir, path)
    assert code == 0, out
    assert "0 labelled, 0 rejected" in out
    assert "3 frame(s) NOT labelled, left unverified" in out and "(entries 1, 2, 3)" in out
    queue = open_queue(state_dir)
    assert [(e.status, e.verified, e.labels) for e in queue.list()] == [("new", False, None)] * 3
    assert queue.verified() == []
    queue.close()


def test_changed_frames_are_verified_with_the_importer_as_reviewer(state_dir: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.learn.review.getpass.getuser", lambda: "alice")
    path = export(state_dir, tmp_path / "review", "jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[0]["suffix"] = "hole<loc_100><loc_200><loc_500><loc_600>"  # entry 1 changed, 2 and 3 untouched
    lines[2]["status"] = "rejected"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, out = import_file(state_dir, path)
    assert code == 0 and "1 labelled, 1 rejected" in out and "1 frame(s) NOT labelled" in out and "(entries 2)" in out
    queue = open_queue(state_dir)
    first, second, third = (queue.get(i) for i in (1, 2, 3))
    assert (first.status, first.verified, first.reviewer) == ("labelled", True, "alice")
    assert first.reviewed_at is not None
    assert (second.status, second.verified) == ("new", False)
    assert (third.status, third.verified, third.reviewer) == ("rejected", True, "alice")
    queue.close()


def test_reimporting_a_reviewed_export_keeps_the_review(state_dir: Path, tmp_path: Path) -> None:
    queue = open_queue(state_dir)
    queue.set_status(1, "labelled", unsure(1.0, box=(10, 12, 30, 40)), reviewer="tech")  # accepted in the station
    queue.close()
    path = export(state_dir, tmp_path / "review", "coco")
    doc = json.loads(path.read_text())
    doc["images"] = [image for image in doc["images"] if image["id"] == 1]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == 1]
    path.write_text(json.dumps(doc))
    code, out = import_file(state_dir, path)
    assert code == 0 and "0 labelled, 0 rejected" in out and "NOT labelled" not in out
    queue = open_queue(state_dir)
    entry = queue.get(1)
    assert (entry.status, entry.verified, entry.reviewer) == ("labelled", True, "tech")
    queue.close()
