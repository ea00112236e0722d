"""The data set model: image names relative to a common root; writers never overwrite one image with another."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from agent.detections import Detections
from finetune.data.dataset import Dataset, Sample
from finetune.data.files import copy_images, probe_image
from tests.finetune.data.helpers import CLASSES, write_image


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
