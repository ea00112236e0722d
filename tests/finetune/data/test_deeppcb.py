"""DeepPCB layout: `{ID}.jpg` listed vs `{ID}_test.jpg` on disk, type ids, templates, bad lines; plus the real set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from finetune.data.deeppcb import CLASS_NAMES, read_deeppcb
from finetune.data.issues import AnnotationError
from tests.finetune.data.helpers import write_image

SHARED = Path(os.environ.get("EDGE_INSPECT_SHARED", Path(__file__).resolve().parents[3] / ".." / "shared"))
REAL_DEEPPCB = SHARED / "datasets" / "deeppcb"


def _fake_deeppcb(root: Path, boxes: dict[str, list[str]], split: str = "trainval") -> Path:
    """A PCBData tree in the upstream layout: split lists name `{ID}.jpg`, files are `{ID}_test/_temp.jpg`."""
    data = root / "PCBData"
    listed = []
    for image_id, lines in boxes.items():
        group = image_id[:5]
        write_image(data / f"group{group}" / group / f"{image_id}_test.jpg", (64, 64), channels=1)
        write_image(data / f"group{group}" / group / f"{image_id}_temp.jpg", (64, 64), channels=1, seed=1)
        annotation = data / f"group{group}" / f"{group}_not" / f"{image_id}.txt"
        annotation.parent.mkdir(parents=True, exist_ok=True)
        annotation.write_text("\n".join(lines))  # upstream files often lack the final newline
        listed.append(f"group{group}/{group}/{image_id}.jpg group{group}/{group}_not/{image_id}.txt")
    (data / f"{split}.txt").write_text("\n".join(listed))
    return root


def test_maps_listed_names_to_test_images_and_types_to_class_names(tmp_path: Path) -> None:
    _fake_deeppcb(tmp_path, {"12345000": ["1 2 10 12 1", "20 20 30 40 5"], "12345001": ["0 0 64 64 6"]})
    dataset = read_deeppcb(tmp_path, split="trainval")
    assert dataset.class_names == CLASS_NAMES
    assert [str(dataset.relative_name(s)) for s in dataset] == ["group12345/12345/12345000_test.jpg",
                                                               "group12345/12345/12345001_test.jpg"]
    assert dataset.samples[0].detections.labels == ["open", "spurious_copper"]
    assert dataset.samples[0].detections.xyxy.tolist() == [[1, 2, 10, 12], [20, 20, 30, 40]]
    assert dataset.samples[0].image_size == (64, 64)


def test_include_templates_adds_each_template_as_a_frame_without_boxes(tmp_path: Path) -> None:
    _fake_deeppcb(tmp_path, {"12345000": ["1 2 10 12 1"]})
    dataset = read_deeppcb(tmp_path / "PCBData", split="trainval", include_templates=True)
    assert [(s.image.name, len(s.detections)) for s in dataset] == [("12345000_test.jpg", 1), ("12345000_temp.jpg", 0)]


def test_comma_separated_lines_as_in_the_upstream_readme_are_accepted(tmp_path: Path) -> None:
    _fake_deeppcb(tmp_path, {"12345000": ["1,2,10,12,3"]})
    assert read_deeppcb(tmp_path, split="trainval").samples[0].detections.labels == ["mousebite"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1 2 10 12 7", "unknown class: type 7"),
        ("1 2 10 12", "expected 5 values"),
        ("1 2 10 x 3", "malformed line"),
        ("10 2 1 12 3", "x2 < x1"),
        ("1 2 10 65 3", "outside the 64x64 image"),
    ],
)
def test_each_bad_box_line_is_reported_with_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    _fake_deeppcb(tmp_path, {"12345000": ["1 2 10 12 1", line]})
    with pytest.raises(AnnotationError) as caught:
        read_deeppcb(tmp_path, split="trainval")
    [issue] = caught.value.issues
    assert issue.location.file == tmp_path / "PCBData" / "group12345" / "12345_not" / "12345000.txt"
    assert issue.location.line == 2
    assert expected in issue.message


def test_missing_files_are_reported_against_the_split_list_line(tmp_path: Path) -> None:
    _fake_deeppcb(tmp_path, {"12345000": ["1 2 10 12 1"], "12345001": ["1 2 10 12 1"]})
    group = tmp_path / "PCBData" / "group12345"
    (group / "12345" / "12345001_test.jpg").unlink()
    (group / "12345" / "12345000_temp.jpg").unlink()
    with pytest.raises(AnnotationError) as caught:
        read_deeppcb(tmp_path, split="trainval", include_templates=True)
    assert [(i.location.line, i.message.split(" /")[0]) for i in caught.value.issues] == [
        (1, "missing image"), (2, "missing image")]
    dataset = read_deeppcb(tmp_path, split="trainval", include_templates=True, skip_invalid=True)
    assert [s.image.name for s in dataset] == ["12345000_test.jpg", "12345001_temp.jpg"]


def test_unknown_split_and_missing_split_list_are_refused(tmp_path: Path) -> None:
    _fake_deeppcb(tmp_path, {"12345000": []})
    with pytest.raises(ValueError, match="split 'val'"):
        read_deeppcb(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match=r"test.txt"):
        read_deeppcb(tmp_path, split="test")


@pytest.mark.skipif(not (REAL_DEEPPCB / "PCBData").is_dir(), reason=f"DeepPCB not found at {REAL_DEEPPCB}")
def test_the_real_deeppcb_reads_cleanly_with_1000_trainval_and_500_test_images() -> None:
    trainval = read_deeppcb(REAL_DEEPPCB, split="trainval")
    test = read_deeppcb(REAL_DEEPPCB, split="test", include_templates=True)
    assert len(trainval) == 1000
    assert len(test) == 1000 and sum(len(s.detections) == 0 for s in test) == 500
    assert all(s.image.name.endswith("_test.jpg") for s in trainval)
    assert all(s.image_size == (640, 640) for s in trainval)
    assert min(len(s.detections) for s in trainval) >= 1
    annotation_lines = sum(
        sum(1 for line in (REAL_DEEPPCB / "PCBData" / listed.split()[1]).read_text().splitlines() if line.strip())
        for listed in (REAL_DEEPPCB / "PCBData" / "trainval.txt").read_text().splitlines() if listed.strip()
    )
    assert trainval.box_count == annotation_lines  # no box lost
    assert not ({s.image for s in trainval} & {s.image for s in test})
