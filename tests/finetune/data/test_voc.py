"""Pascal VOC folders: round trip within a pixel, supervision interoperability, problems with XML line numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from finetune.data.dataset import Dataset
from finetune.data.issues import AnnotationError
from finetune.data.voc import read_voc, write_voc
from tests.finetune.data.helpers import assert_same_dataset, by_name, write_image


def test_round_trip_keeps_boxes_within_one_pixel(dataset: Dataset, tmp_path: Path) -> None:
    write_voc(dataset, tmp_path / "out")
    assert_same_dataset(dataset, read_voc(tmp_path / "out"), tolerance=1.0)


def test_supervision_reads_what_we_write(dataset: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_voc(dataset, out)
    ours = by_name(dataset)
    images, annotations = str(out / "JPEGImages" / "line_a"), str(out / "Annotations" / "line_a")
    theirs = sv.DetectionDataset.from_pascal_voc(images, annotations)
    assert len(theirs) == sum(1 for name in ours if name.startswith("line_a/"))
    for path, _, detections in theirs:
        expected = ours[f"line_a/{Path(path).name}"].detections
        assert sorted(np.asarray(detections.data["class_name"]).tolist()) == sorted(expected.labels)
        got, want = detections.xyxy, expected.xyxy
        np.testing.assert_allclose(got[np.lexsort(got.T[::-1])], want[np.lexsort(want.T[::-1])], atol=1.5)


_OBJECT = ("<object><name>{name}</name>"
           "<bndbox><xmin>{x1}</xmin><ymin>10</ymin><xmax>{x2}</xmax><ymax>20</ymax></bndbox></object>")


def _voc(tmp_path: Path, objects: str, classes: str | None = "scratch\nhole\n") -> Path:
    write_image(tmp_path / "JPEGImages" / "a.png", (100, 80))
    (tmp_path / "Annotations").mkdir()
    xml = (f"<annotation>\n  <filename>a.png</filename>\n  <size><width>100</width><height>80</height></size>\n"
           f"  {_OBJECT.format(name='hole', x1=1, x2=5)}\n  {objects}\n</annotation>\n")
    (tmp_path / "Annotations" / "a.xml").write_text(xml)
    if classes is not None:
        (tmp_path / "classes.txt").write_text(classes)
    return tmp_path


def test_reads_objects_in_the_class_order_of_classes_txt(tmp_path: Path) -> None:
    dataset = read_voc(_voc(tmp_path, _OBJECT.format(name="scratch", x1=10.5, x2=30)))
    assert dataset.class_names == ("scratch", "hole")
    assert dataset.samples[0].detections.labels == ["hole", "scratch"]
    assert dataset.samples[0].detections.xyxy[1].tolist() == [10.5, 10, 30, 20]


def test_without_classes_txt_names_are_collected_in_first_seen_order(tmp_path: Path) -> None:
    dataset = read_voc(_voc(tmp_path, _OBJECT.format(name="scratch", x1=10, x2=30), classes=None))
    assert dataset.class_names == ("hole", "scratch")


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_OBJECT.format(name="dent", x1=10, x2=30), "unknown class 'dent'"),
        (_OBJECT.format(name="scratch", x1=30, x2=10), "x2 < x1"),
        (_OBJECT.format(name="scratch", x1=30, x2=101), "outside the 100x80 image"),
        (_OBJECT.format(name="scratch", x1="a", x2=10), "needs a <bndbox> with numeric"),
        ("<object><bndbox/></object>", "has no <name>"),
    ],
)
def test_each_bad_object_is_reported_with_the_xml_line(tmp_path: Path, obj: str, expected: str) -> None:
    _voc(tmp_path, obj)
    with pytest.raises(AnnotationError) as caught:
        read_voc(tmp_path)
    [issue] = caught.value.issues
    assert (issue.location.file, issue.location.line) == (tmp_path / "Annotations" / "a.xml", 5)
    assert expected in issue.message


def test_malformed_xml_and_a_missing_image_are_reported(tmp_path: Path) -> None:
    _voc(tmp_path, "<object>")
    with pytest.raises(AnnotationError, match=r"a.xml:6: malformed XML"):
        read_voc(tmp_path)
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><filename>gone.png</filename></annotation>")
    with pytest.raises(AnnotationError, match=r"a.xml:1: missing image .*gone.png"):
        read_voc(tmp_path)


def test_an_image_without_xml_is_a_defect_free_frame(tmp_path: Path) -> None:
    _voc(tmp_path, "")
    write_image(tmp_path / "JPEGImages" / "b.png", (100, 80))
    dataset = read_voc(tmp_path)
    assert [len(sample.detections) for sample in dataset] == [1, 0]
