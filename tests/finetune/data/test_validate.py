"""Checking parsed annotations: full image decode, empty boxes, images described twice, what skipping drops."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.data.files import probe_image
from finetune.data.issues import AnnotationError, IssueKind, IssueLog, Location
from finetune.data.validate import RawBox, RawSample, build_dataset, resolve_classes
from tests.finetune.data.helpers import CLASSES, truncate, write_image


def _raw(image: Path, *boxes: tuple[str, float, float, float, float], binned: bool = False) -> RawSample:
    location = Location(image.with_suffix(".txt"), 1)
    raw = RawSample(image, location)
    for label, *xyxy in boxes:
        corners = (xyxy[0], xyxy[1], xyxy[2], xyxy[3])
        raw.boxes.append(RawBox(label, corners, location, normalized=binned, binned=binned))
    return raw


def _problems(raws: list[RawSample], class_names: tuple[str, ...] = CLASSES) -> list[tuple[IssueKind, str]]:
    with pytest.raises(AnnotationError) as caught:
        build_dataset(raws, class_names, IssueLog(), skip_invalid=False)
    return [(issue.kind, issue.message) for issue in caught.value.issues]


def test_a_truncated_jpeg_whose_header_reads_fine_is_an_undecodable_image(tmp_path: Path) -> None:
    image = truncate(write_image(tmp_path / "a.jpg", (64, 48)))
    assert probe_image(image) == (64, 48)  # the header alone would pass it
    [(kind, message)] = _problems([_raw(image, ("hole", 1, 1, 5, 5))])
    assert kind is IssueKind.BAD_IMAGE
    assert message.startswith(f"cannot decode image {image}: image file is truncated")


@pytest.mark.parametrize(
    ("box", "expected"),
    [(("hole", 10, 5, 10, 20), "zero width (x1 = x2)"), (("hole", 5, 20, 10, 20), "zero height (y1 = y2)"),
     (("hole", 10, 5, 4, 20), "x2 < x1")],
)
def test_a_box_without_area_is_a_problem(tmp_path: Path, box: tuple[str, float, float, float, float],
                                         expected: str) -> None:
    [(kind, message)] = _problems([_raw(write_image(tmp_path / "a.png", (64, 48)), box)])
    assert kind is IssueKind.EMPTY_BOX and expected in message


def test_equal_loc_bins_are_a_box_narrower_than_a_bin_not_an_empty_one(tmp_path: Path) -> None:
    raw = _raw(write_image(tmp_path / "a.png", (64, 48)), ("hole", 0.1005, 0.2, 0.1005, 0.3), binned=True)
    dataset = build_dataset([raw], CLASSES, IssueLog(), skip_invalid=False)
    assert dataset.box_count == 1


def test_an_image_described_twice_is_a_problem_on_both_descriptions(tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png", (64, 48))
    first, second = _raw(image, ("hole", 1, 1, 5, 5)), _raw(image, ("stain", 1, 1, 5, 5))
    second.location = Location(tmp_path / "b.xml", 3)
    problems = _problems([first, second])
    assert [kind for kind, _ in problems] == [IssueKind.DUPLICATE, IssueKind.DUPLICATE]
    assert f"annotated more than once (also at {tmp_path / 'b.xml'}:3)" in problems[0][1]


def test_skipping_drops_the_whole_image_and_counts_its_boxes_even_unparsed_ones(tmp_path: Path) -> None:
    good = _raw(write_image(tmp_path / "good.png", (64, 48)), ("hole", 1, 1, 5, 5))
    bad = _raw(write_image(tmp_path / "bad.png", (64, 48)), ("hole", 1, 1, 5, 5), ("stain", 1, 1, 90, 5))
    bad.box_problem(bad.location, "malformed line 'x'")
    dataset = build_dataset([good, bad], CLASSES, IssueLog(), skip_invalid=True)
    assert [sample.image.name for sample in dataset] == ["good.png"]
    assert dataset.notes.dropped_images == (bad.image,) and dataset.notes.dropped_boxes == 3
    assert [issue.kind for issue in dataset.skipped] == [IssueKind.BAD_BOX, IssueKind.OUTSIDE]


def test_images_taken_as_defect_free_are_counted_unless_dropped(tmp_path: Path) -> None:
    kept = RawSample(write_image(tmp_path / "a.png", (64, 48)), Location(tmp_path / "a.png"), unlabelled=True)
    broken = RawSample(truncate(write_image(tmp_path / "b.jpg", (64, 48))), Location(tmp_path / "b.jpg"),
                       unlabelled=True)
    dataset = build_dataset([kept, broken], CLASSES, IssueLog(), skip_invalid=True)
    assert dataset.notes.unlabelled_as_good == (kept.image,)
    assert [len(sample.detections) for sample in dataset] == [0]


def test_without_a_class_list_the_labels_are_listed_and_skipping_cannot_hide_it(tmp_path: Path) -> None:
    raws = [_raw(write_image(tmp_path / "a.png", (64, 48)), ("scratch", 1, 1, 5, 5), ("scrach", 1, 1, 5, 5))]
    log = IssueLog()
    names, source = resolve_classes(None, tmp_path / "classes.txt", raws, discover=False, log=log)
    assert (names, source) == (("scratch", "scrach"), "labels")
    with pytest.raises(AnnotationError) as caught:
        build_dataset(raws, names, log, skip_invalid=True)
    [issue] = caught.value.issues
    assert issue.kind is IssueKind.NO_CLASS_LIST
    assert "'scratch' (1 box), 'scrach' (1 box)" in issue.message and "--classes scratch,scrach" in issue.message
    assert caught.value.dataset is not None and len(caught.value.dataset) == 1  # what validate summarises


def test_a_class_list_comes_from_the_caller_then_the_file_and_discovery_must_be_asked_for(tmp_path: Path) -> None:
    raws = [_raw(write_image(tmp_path / "a.png", (64, 48)), ("b", 1, 1, 5, 5))]
    (tmp_path / "classes.txt").write_text("a\nb\n")
    assert resolve_classes(("x",), tmp_path / "classes.txt", raws, False, IssueLog()) == (("x",), "given")
    assert resolve_classes(None, tmp_path / "classes.txt", raws, False, IssueLog()) == (("a", "b"), "class file")
    log = IssueLog()
    assert resolve_classes(None, tmp_path / "none.txt", raws, True, log) == (("b",), "labels")
    assert not log.issues
