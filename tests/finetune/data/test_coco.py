"""COCO instances JSON: round trip, interoperability with supervision, bad entries located by JSON path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import supervision as sv

from finetune.data.coco import ANNOTATIONS, read_coco, write_coco
from finetune.data.dataset import Dataset
from finetune.data.issues import AnnotationError
from tests.finetune.data.helpers import assert_same_dataset, by_name, write_image


def test_round_trip_keeps_boxes_and_category_order(dataset: Dataset, tmp_path: Path) -> None:
    write_coco(dataset, tmp_path / "out")
    assert_same_dataset(dataset, read_coco(tmp_path / "out"), tolerance=0.01)


def test_supervision_reads_what_we_write(dataset: Dataset, tmp_path: Path) -> None:
    write_coco(dataset, tmp_path / "out")
    theirs = sv.DetectionDataset.from_coco(str(tmp_path / "out" / "images"), str(tmp_path / "out" / ANNOTATIONS))
    assert list(theirs.classes) == list(dataset.class_names)
    ours = by_name(dataset)
    for path, _, detections in theirs:
        name = Path(path).relative_to(tmp_path / "out" / "images").as_posix()
        expected = ours[name].detections
        np.testing.assert_allclose(_rows_sorted(detections.xyxy), _rows_sorted(expected.xyxy), atol=0.01)


def _rows_sorted(xyxy: np.ndarray) -> np.ndarray:
    return xyxy[np.lexsort(xyxy.T[::-1])] if len(xyxy) else xyxy.reshape(0, 4)


def test_we_read_what_supervision_writes(dataset: Dataset, tmp_path: Path) -> None:
    images = [str(sample.image) for sample in dataset]
    annotations = {str(sample.image): sample.detections.to_supervision() for sample in dataset}
    theirs = sv.DetectionDataset(list(dataset.class_names), images, annotations)
    theirs.as_coco(str(tmp_path / "sv" / "images"), str(tmp_path / "sv" / "instances.json"))
    back = read_coco(tmp_path / "sv" / "instances.json")
    assert back.class_names == dataset.class_names
    for sample in dataset:
        match = [s for s in back if s.image.name == sample.image.name]
        assert len(match) == 1
        np.testing.assert_allclose(_rows_sorted(match[0].detections.xyxy), _rows_sorted(sample.detections.xyxy),
                                   atol=0.01)


def _coco(tmp_path: Path, annotations: list[dict[str, Any]], width: int = 100) -> Path:
    write_image(tmp_path / "images" / "a.png", (100, 80))
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": width, "height": 80}],
        "categories": [{"id": 3, "name": "scratch"}, {"id": 7, "name": "hole"}],
        "annotations": annotations,
    }
    path = tmp_path / ANNOTATIONS
    path.write_text(json.dumps(document))
    return path


def _box(bbox: Any, category: int = 3, image_id: int = 1) -> dict[str, Any]:
    return {"id": 11, "image_id": image_id, "category_id": category, "bbox": bbox, "area": 1, "iscrowd": 0}


def test_category_ids_map_to_names_in_id_order(tmp_path: Path) -> None:
    dataset = read_coco(_coco(tmp_path, [_box([10, 20, 30, 40], 7), _box([0, 0, 5, 5], 3)]))
    assert dataset.class_names == ("scratch", "hole")
    assert dataset.samples[0].detections.labels == ["hole", "scratch"]
    assert dataset.samples[0].detections.xyxy[0].tolist() == [10, 20, 40, 60]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (_box([10, 20, 30, 40], category=9), "unknown class: category_id 9"),
        (_box([10, 20, 30]), "'bbox' must be [x, y, width, height]"),
        (_box([10, 20, 30, 40], image_id=5), "image_id 5 is not in 'images'"),
        (_box([90, 20, 30, 40]), "outside the 100x80 image"),
        (_box([10, 20, -5, 40]), "x2 < x1"),
    ],
)
def test_each_bad_annotation_is_reported_with_its_json_path(
    tmp_path: Path, entry: dict[str, Any], expected: str
) -> None:
    path = _coco(tmp_path, [_box([1, 1, 2, 2]), entry])
    with pytest.raises(AnnotationError) as caught:
        read_coco(path)
    [issue] = caught.value.issues
    assert issue.location.file == path
    assert issue.location.where == "annotations[1] (id 11)"
    assert expected in issue.message


def test_a_wrong_declared_size_and_a_missing_image_are_reported(tmp_path: Path) -> None:
    path = _coco(tmp_path, [], width=120)
    with pytest.raises(AnnotationError, match=r"declared size 120x80 but .*a.png is 100x80"):
        read_coco(path)
    (tmp_path / "images" / "a.png").unlink()
    with pytest.raises(AnnotationError, match=r"\[images\[0\] \(id 1\)\]: missing image"):
        read_coco(path)


def test_malformed_json_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / ANNOTATIONS
    path.write_text('{\n  "images": [],\n  "annotations": [,]\n}')
    with pytest.raises(AnnotationError, match=rf"{path}:3: malformed JSON"):
        read_coco(tmp_path)


def test_skip_invalid_drops_the_image_with_a_bad_box_and_keeps_the_rest(tmp_path: Path) -> None:
    path = _coco(tmp_path, [_box([1, 1, 2, 2]), _box([10, 20, 30, 40], category=9)])
    dataset = read_coco(path, skip_invalid=True)
    assert len(dataset) == 0 and len(dataset.skipped) == 1
