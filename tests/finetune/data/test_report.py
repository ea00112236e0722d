"""What validate reports: every problem collected (even unskippable ones), per-class counts, full lists in a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.data.convert import ReadOptions
from finetune.data.issues import AnnotationIssue, IssueKind, Location
from finetune.data.report import problem_lines, report_path, summary_lines, validate_dataset, write_report
from tests.finetune.data.helpers import truncate, write_image, write_voc_xml


def _broken_voc(root: Path) -> Path:
    """Three images: one fine, one truncated, one whose XML has an unknown-to-anyone typo; no classes.txt."""
    for stem in ("a", "b", "c"):
        write_image(root / "JPEGImages" / f"{stem}.jpg", (60, 40), seed=ord(stem))
    truncate(root / "JPEGImages" / "b.jpg")
    write_voc_xml(root / "Annotations" / "a.xml", "a.jpg", [("hole", 1, 1, 9, 9), ("hole", 2, 2, 8, 8)])
    write_voc_xml(root / "Annotations" / "b.xml", "b.jpg", [("hole", 1, 1, 9, 9)])
    write_voc_xml(root / "Annotations" / "c.xml", "c.jpg", [("hloe", 1, 1, 9, 9)])
    return root


def test_validate_collects_every_problem_and_still_summarises_what_would_be_kept(tmp_path: Path) -> None:
    validation = validate_dataset("voc", _broken_voc(tmp_path))
    assert [issue.kind for issue in validation.issues] == [IssueKind.NO_CLASS_LIST, IssueKind.BAD_IMAGE]
    assert validation.dataset is not None and len(validation.dataset) == 2
    text = "\n".join(summary_lines(validation))
    assert "3 images, 4 boxes; classes from the labels, in first-seen order" in text
    assert "1 image(s) with problems, 1 box(es) in them" in text
    assert "2 problem(s), by kind:" in text and "1  undecodable image" in text


def test_with_a_class_list_a_typo_is_an_unknown_class_and_counts_per_class_are_shown(tmp_path: Path) -> None:
    validation = validate_dataset("voc", _broken_voc(tmp_path), ReadOptions(class_names=("hole",)))
    assert sorted(issue.kind.value for issue in validation.issues) == ["undecodable image", "unknown class"]
    lines = summary_lines(validation)
    assert any(line.split() == ["hole", "1", "2"] for line in lines)  # only a.jpg is clean: 1 image, 2 boxes


def test_a_console_lists_the_first_problems_and_says_where_the_rest_are(tmp_path: Path) -> None:
    issues = [AnnotationIssue(Location(tmp_path / "x.txt", i), f"problem {i}", IssueKind.BAD_BOX) for i in range(60)]
    lines = problem_lines(issues, tmp_path / "full.txt")
    assert len(lines) == 51 and lines[-1] == f"  ... and 10 more (full list in {tmp_path / 'full.txt'})"
    write_report(tmp_path / "full.txt", ["summary"], issues)
    written = (tmp_path / "full.txt").read_text().splitlines()
    assert written[:3] == ["summary", "", "60 problem(s):"]
    assert written[-1] == f"{tmp_path / 'x.txt'}:59: problem 59  [malformed box]" and len(written) == 63


def test_the_default_report_file_is_named_after_the_data_set_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "steel").mkdir()
    (tmp_path / "coco.json").write_text("{}")
    assert report_path(None, Path("steel")) == tmp_path / "steel-problems.txt"
    assert report_path(None, Path("coco.json")) == tmp_path / "coco-problems.txt"
    assert report_path(tmp_path / "mine.txt", Path("steel")) == tmp_path / "mine.txt"
