"""The data set model and file helpers: relative image names, no overwrites, full decodes, any-case folders."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from agent.detections import Detections
from finetune.data.dataset import Dataset, Sample
from finetune.data.files import ImageProblem, copy_images, decode_image, find_subdir, probe_image
from finetune.data.issues import IssueKind
from tests.finetune.data.helpers import CLASSES, truncate, write_image


def _sample(path: Path) -> Sample:
    return Sample(path, Detections.empty(CLASSES, (20, 10)))


def test_names_are_relative_to_the_deepest_common_folder(tmp_path: Path) -> None:
    a = write_image(tmp_path / "set" / "x" / "a.png", (20, 10))
    b = write_image(tmp_path / "set" / "y" / "b.png", (20, 10))
    dataset = Dataset(CLASSES, [_sample(a), _sample(b)])
    assert dataset.root == tmp_path / "set"
    assert [dataset.relative_name(s) for s in dataset] == [PurePosixPath("x/a.png"), PurePosixPath("y/b.png")]
    assert dataset.relative_name(_sample(tmp_path / "elsewhere.png")) == PurePosixPath("elsewhere.png")


def test_two_images_that_would_land_on_one_name_are_refused(tmp_path: Path) -> None:
    a = write_image(tmp_path / "x" / "a.png", (20, 10))
    b = write_image(tmp_path / "y" / "a.png", (20, 10))
    dataset = Dataset(CLASSES, [_sample(a), _sample(b)], root=tmp_path / "x")
    with pytest.raises(ValueError, match=r"would both be written to .*a.png"):
        copy_images(dataset, tmp_path / "out")


def test_probe_reads_the_size_from_the_header_and_explains_failures(tmp_path: Path) -> None:
    assert probe_image(write_image(tmp_path / "a.jpg", (33, 17))) == (33, 17)
    assert probe_image(tmp_path / "none.png") == f"missing image {tmp_path / 'none.png'}"
    (tmp_path / "junk.png").write_text("not an image")
    assert str(probe_image(tmp_path / "junk.png")).startswith("cannot read image")


def test_decoding_reads_every_pixel_so_a_truncated_file_fails_with_the_reason(tmp_path: Path) -> None:
    assert decode_image(write_image(tmp_path / "a.png", (33, 17))) == (33, 17)
    truncated = truncate(write_image(tmp_path / "b.jpg", (64, 64)))
    with pytest.raises(ImageProblem, match=r"cannot decode image .*b.jpg: image file is truncated") as caught:
        decode_image(truncated)
    assert caught.value.kind is IssueKind.BAD_IMAGE
    with pytest.raises(ImageProblem, match="missing image") as caught:
        decode_image(tmp_path / "none.png")
    assert caught.value.kind is IssueKind.MISSING_IMAGE


def test_sub_folders_match_in_any_case_and_a_missing_one_lists_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "JPEGIMAGES").mkdir()
    (tmp_path / "labels").mkdir()
    assert find_subdir(tmp_path, ("Annotations", "JPEGImages"), "VOC set") == tmp_path / "JPEGIMAGES"
    missing = r"no Annotations/ folder \(any case\) in .*; found JPEGIMAGES/, labels/"
    with pytest.raises(FileNotFoundError, match=missing):
        find_subdir(tmp_path, ("Annotations",), "VOC set")
