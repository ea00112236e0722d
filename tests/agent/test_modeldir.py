"""A model directory: its class list (`classes.txt`), its thresholds, and what counts as a local path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.modeldir import MissingClassList, looks_local, read_class_names, read_thresholds, write_class_names


def test_class_names_round_trip_in_order(tmp_path: Path) -> None:
    path = write_class_names(tmp_path, ["scratch", "hole", "stain"])
    assert path.read_text() == "scratch\nhole\nstain\n"
    assert read_class_names(tmp_path) == ("scratch", "hole", "stain")


def test_blank_lines_and_surrounding_spaces_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("  scratch \n\nhole\n\n")
    assert read_class_names(str(tmp_path)) == ("scratch", "hole")


def test_a_missing_class_list_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(MissingClassList, match="classes.txt does not exist") as error:
        read_class_names(tmp_path)
    assert error.value.path == tmp_path / "classes.txt" and isinstance(error.value, FileNotFoundError)


@pytest.mark.parametrize("path", ["./models/tiny", "/opt/model", "~/m", "tiny", "a/b/c", "C:\\models\\m"])
def test_paths_that_can_only_be_local_are_never_taken_for_hub_ids(path: str) -> None:
    assert looks_local(path)


def test_org_slash_name_is_a_hub_id_unless_its_first_part_is_a_local_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not looks_local("microsoft/Florence-2-base")
    (tmp_path / "models").mkdir()
    assert looks_local("models/tiny")


def test_thresholds_are_read_and_a_missing_file_means_none(tmp_path: Path) -> None:
    assert read_thresholds(tmp_path) == {}
    (tmp_path / "thresholds.json").write_text('{"hole": 0.25, "stain": 1}')
    assert read_thresholds(tmp_path) == {"hole": 0.25, "stain": 1.0}


@pytest.mark.parametrize("text, match", [("[0.5]", "must map class names"), ("{x", "is not JSON"),
                                         ('{"hole": "high"}', "'hole' must be a number"),
                                         ('{"hole": true}', "'hole' must be a number")])
def test_malformed_thresholds_are_refused_naming_the_file(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "thresholds.json").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_thresholds(tmp_path)
