"""YOLO folders: round trip, supervision interoperability, per-line problems, label files without images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from finetune.data.dataset import Dataset
from finetune.data.issues import AnnotationError, IssueKind
from finetune.data.yolo import DATA_YAML, read_yolo, read_yolo_names, write_yolo
from tests.finetune.data.helpers import assert_same_dataset, by_name, write_image


def test_round_trip_keeps_boxes_within_a_hundredth_of_a_pixel(dataset: Dataset, tmp_path: Path) -> None:
    write_yolo(dataset, tmp_path / "out")
    back = read_yolo(tmp_path / "out")
    assert_same_dataset(dataset, back, tolerance=0.01)
    assert (tmp_path / "out" / "labels" / "line_b" / "frame000.txt").read_text() == ""  # defect-free, explicit


def test_supervision_reads_what_we_write(dataset: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_yolo(dataset, out)
    ours = by_name(dataset)
    for folder in ("line_a", "line_b"):
        theirs = sv.DetectionDataset.from_yolo(str(out / "images" / folder), str(out / "labels" / folder),
                                               str(out / DATA_YAML))
        assert list(theirs.classes) == list(dataset.class_names)
        for path, _, detections in theirs:
            expected = ours[f"{folder}/{Path(path).name}"].detections
            order = np.lexsort(detections.xyxy.T[::-1])
            expected_order = np.lexsort(expected.xyxy.T[::-1])
            np.testing.assert_allclose(detections.xyxy[order], expected.xyxy[expected_order], atol=0.01)
            assert np.asarray(detections.class_id)[order].tolist() == expected.class_id[expected_order].tolist()


def _yolo(tmp_path: Path, lines: list[str]) -> Path:
    write_image(tmp_path / "images" / "a.png", (100, 80))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / DATA_YAML).write_text("names:\n  0: scratch\n  1: hole\n")
    return tmp_path


def test_names_as_a_map_and_centre_size_boxes(tmp_path: Path) -> None:
    dataset = read_yolo(_yolo(tmp_path, ["1 0.5 0.5 0.2 0.25"]))
    assert dataset.class_names == ("scratch", "hole")
    assert dataset.samples[0].detections.labels == ["hole"]
    np.testing.assert_allclose(dataset.samples[0].detections.xyxy[0], [40, 30, 60, 50], atol=1e-4)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0 0.5 0.5 0.2", "expected 5 values"),
        ("0 0.5 0.5 0.2 0.2 0.1 0.1", "expected 5 values"),
        ("x 0.5 0.5 0.2 0.2", "malformed line"),
        ("2 0.5 0.5 0.2 0.2", "unknown class id 2"),
        ("0 0.95 0.5 0.2 0.2", "outside the 100x80 image"),
        ("0 0.5 0.5 -0.2 0.2", "x2 < x1"),
        ("0 0.5 0.5 0.2 -0.2", "y2 < y1"),
    ],
)
def test_each_bad_label_line_is_reported_with_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    _yolo(tmp_path, ["0 0.5 0.5 0.1 0.1", line])
    with pytest.raises(AnnotationError) as caught:
        read_yolo(tmp_path)
    [issue] = caught.value.issues
    assert (issue.location.file, issue.location.line) == (tmp_path / "labels" / "a.txt", 2)
    assert expected in issue.message


def test_a_label_file_without_an_image_is_reported_and_skippable(tmp_path: Path) -> None:
    _yolo(tmp_path, ["0 0.5 0.5 0.1 0.1"])
    (tmp_path / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(AnnotationError, match=r"ghost.txt: missing image"):
        read_yolo(tmp_path)
    dataset = read_yolo(tmp_path, skip_invalid=True)
    assert len(dataset) == 1 and len(dataset.skipped) == 1


def test_class_names_come_from_classes_txt_when_there_is_no_data_yaml(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    assert read_yolo_names(tmp_path) == ("a", "b")
    (tmp_path / DATA_YAML).write_text("names: {0: x, 2: y}\n")
    with pytest.raises(ValueError, match="'names' must be"):
        read_yolo_names(tmp_path)


def test_an_image_without_label_file_is_an_error_unless_taken_as_defect_free(tmp_path: Path) -> None:
    _yolo(tmp_path, ["0 0.5 0.5 0.1 0.1"])
    write_image(tmp_path / "images" / "b.png", (100, 80))
    with pytest.raises(AnnotationError) as caught:
        read_yolo(tmp_path)
    [issue] = caught.value.issues
    assert issue.kind is IssueKind.NO_ANNOTATION
    assert f"no label file {tmp_path / 'labels' / 'b.txt'}; pass --unlabelled-as-good" in issue.message
    dataset = read_yolo(tmp_path, unlabelled_as_good=True)
    assert [(s.image.name, len(s.detections)) for s in dataset] == [("a.png", 1), ("b.png", 0)]
    assert len(dataset.notes.unlabelled_as_good) == 1


def test_folder_names_match_in_any_case(tmp_path: Path) -> None:
    _yolo(tmp_path, ["0 0.5 0.5 0.1 0.1"])
    (tmp_path / "images").rename(tmp_path / "Images")
    (tmp_path / "labels").rename(tmp_path / "LABELS")
    assert read_yolo(tmp_path).box_count == 1


def test_a_zero_width_box_is_an_error(tmp_path: Path) -> None:
    _yolo(tmp_path, ["0 0.5 0.5 0 0.1"])
    with pytest.raises(AnnotationError, match=r"a.txt:1: box .*: zero width"):
        read_yolo(tmp_path)
