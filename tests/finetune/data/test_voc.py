"""Pascal VOC folders: round trip within a pixel, supervision interoperability, problems with XML line numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from finetune.data.dataset import Dataset
from finetune.data.issues import AnnotationError, IssueKind
from finetune.data.voc import read_voc, write_voc
from tests.finetune.data.helpers import assert_same_dataset, by_name, write_image, write_voc_xml


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


def test_without_classes_txt_names_are_taken_in_first_seen_order_only_when_asked(tmp_path: Path) -> None:
    _voc(tmp_path, _OBJECT.format(name="scratch", x1=10, x2=30), classes=None)
    with pytest.raises(AnnotationError, match=r"no class list .*--classes hole,scratch"):
        read_voc(tmp_path)
    dataset = read_voc(tmp_path, discover_classes=True)
    assert dataset.class_names == ("hole", "scratch") and dataset.notes.classes_from == "labels"


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
    (tmp_path / "JPEGImages" / "a.png").unlink()
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><filename>gone.png</filename></annotation>")
    with pytest.raises(AnnotationError, match=r"a.xml:1: missing image .*gone.png"):
        read_voc(tmp_path)


def _pair_set(root: Path, xmls: dict[str, str | None], images: tuple[str, ...], box_x2: float = 20) -> Path:
    """JPEGImages/ with `images`, Annotations/{stem}.xml naming `<filename>` (None: no such element), one box."""
    for name in images:
        write_image(root / "JPEGImages" / name, (100, 80))
    for stem, filename in xmls.items():
        write_voc_xml(root / "Annotations" / f"{stem}.xml", filename, [("hole", 10, 10, box_x2, 20)])
    (root / "classes.txt").write_text("scratch\nhole\n")
    return root


def test_an_image_without_xml_is_an_error_unless_taken_as_defect_free(tmp_path: Path) -> None:
    _pair_set(tmp_path, {"a": "a.png"}, ("a.png", "b.png"))
    with pytest.raises(AnnotationError) as caught:
        read_voc(tmp_path)
    [issue] = caught.value.issues
    assert issue.kind is IssueKind.NO_ANNOTATION and issue.location.file == tmp_path / "JPEGImages" / "b.png"
    assert f"no annotation file {tmp_path / 'Annotations' / 'b.xml'}; pass --unlabelled-as-good" in issue.message
    dataset = read_voc(tmp_path, unlabelled_as_good=True)
    assert [(s.image.name, len(s.detections)) for s in dataset] == [("a.png", 1), ("b.png", 0)]
    assert dataset.notes.unlabelled_as_good == (tmp_path / "JPEGImages" / "b.png",)


def test_an_xml_naming_another_image_is_an_error_and_drops_its_own_image(tmp_path: Path) -> None:
    _pair_set(tmp_path, {"a": "a.png", "b": "a.png"}, ("a.png", "b.png"))
    with pytest.raises(AnnotationError) as caught:
        read_voc(tmp_path)
    [issue] = caught.value.issues
    assert issue.kind is IssueKind.PAIRING and issue.location.file == tmp_path / "Annotations" / "b.xml"
    assert "<filename> is 'a.png', but this XML pairs with JPEGImages/b.png" in issue.message
    dataset = read_voc(tmp_path, skip_invalid=True, unlabelled_as_good=True)
    assert [s.image.name for s in dataset] == ["a.png"]  # b.png is neither duplicated nor a defect-free frame
    assert dataset.notes.dropped_images == (tmp_path / "JPEGImages" / "b.png",) and dataset.notes.dropped_boxes == 1


def test_an_xml_whose_filename_is_an_image_with_its_own_xml_makes_both_duplicates(tmp_path: Path) -> None:
    _pair_set(tmp_path, {"a": "a.png", "b": "a.png"}, ("a.png",))
    with pytest.raises(AnnotationError) as caught:
        read_voc(tmp_path)
    assert [(i.location.file.name, i.kind) for i in caught.value.issues] == [
        ("a.xml", IssueKind.DUPLICATE), ("b.xml", IssueKind.DUPLICATE)]


def test_skip_invalid_never_turns_the_image_of_a_bad_xml_into_a_defect_free_frame(tmp_path: Path) -> None:
    # the reported bug: a <filename> that did not match left the image unclaimed, so it was written as "good"
    _pair_set(tmp_path, {"a": "a.jpeg", "b": "b.png"}, ("a.png", "b.png"), box_x2=10)
    dataset = read_voc(tmp_path, skip_invalid=True, unlabelled_as_good=True)
    assert len(dataset) == 0 and not dataset.notes.unlabelled_as_good
    assert sorted(p.name for p in dataset.notes.dropped_images) == ["a.png", "b.png"]
    assert {issue.kind for issue in dataset.skipped} == {IssueKind.EMPTY_BOX}


@pytest.mark.parametrize("filename", ["a", "A.PNG", None])
def test_a_filename_without_suffix_or_in_another_case_or_absent_pairs_by_name(tmp_path: Path,
                                                                             filename: str | None) -> None:
    _pair_set(tmp_path, {"a": filename}, ("a.png",))
    assert [s.image.name for s in read_voc(tmp_path)] == ["a.png"]


def test_folder_names_match_in_any_case_but_two_spellings_are_refused(tmp_path: Path) -> None:
    _pair_set(tmp_path, {"a": "a.png"}, ("a.png",))
    (tmp_path / "Annotations").rename(tmp_path / "ANNOTATIONS")
    (tmp_path / "JPEGImages").rename(tmp_path / "jpegimages")
    assert [s.image.name for s in read_voc(tmp_path)] == ["a.png"]
    (tmp_path / "Annotations").mkdir()
    with pytest.raises(ValueError, match=r"both ANNOTATIONS/ and Annotations/"):
        read_voc(tmp_path)


def test_flat_xmls_pair_with_images_in_sub_folders_and_filename_pairs_when_names_differ(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "crazing" / "crazing_1.jpg", (100, 80))
    write_image(tmp_path / "images" / "shots" / "IMG_0001.png", (100, 80))
    write_voc_xml(tmp_path / "annotations" / "crazing_1.xml", "crazing_1.jpg", [("hole", 1, 1, 9, 9)])
    write_voc_xml(tmp_path / "annotations" / "frame_1.xml", "IMG_0001.png", [("hole", 1, 1, 9, 9)])
    dataset = read_voc(tmp_path, ("hole",))
    assert [str(dataset.relative_name(s)) for s in dataset] == ["crazing/crazing_1.jpg", "shots/IMG_0001.png"]
