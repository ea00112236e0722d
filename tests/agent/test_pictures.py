"""Pictures of fail/uncertain frames: which boxes they show, retention by count and bytes, a refusing disk."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from structlog.testing import capture_logs

from agent import pictures
from agent.decide import Thresholds, decide
from agent.detections import Detections
from agent.pictures import PictureKeeper, PictureStore, keeper_from_settings, picture_boxes

CLASSES = ("scratch", "hole")


@dataclass
class Limits:
    enabled: bool = True
    max_count: int = 100
    max_bytes: int = 10**9
    jpeg_quality: int = 85


def boxes(*scores: float) -> Detections:
    xyxy = [[10 + 30 * i, 10, 35 + 30 * i, 50] for i in range(len(scores))]
    return Detections.from_labels(["scratch"] * len(scores), np.asarray(xyxy).reshape(-1, 4), CLASSES, (160, 120),
                                  score=list(scores))


def frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (120, 160, 3), dtype=np.uint8)  # noisy: a few kB each


def test_fail_shows_its_defects_uncertain_every_box_in_the_band_and_pass_gets_no_picture() -> None:
    thresholds = Thresholds({"scratch": 0.5}, band=0.1)
    fail = decide(boxes(0.9, 0.45, 0.1), thresholds)
    assert fail.verdict == "fail" and picture_boxes(fail).score.tolist() == pytest.approx([0.9])
    unsure = decide(boxes(0.55, 0.45, 0.1), thresholds)
    assert unsure.verdict == "uncertain" and picture_boxes(unsure).score.tolist() == pytest.approx([0.55, 0.45])
    assert picture_boxes(decide(boxes(0.1), thresholds)) is None


def test_retention_by_count_evicts_the_oldest(tmp_path: Path) -> None:
    store = PictureStore(tmp_path / "pictures", Limits(max_count=2))
    ids = [store.save(frame(i), boxes(0.9)) for i in range(3)]
    assert all(ids) and len(store) == 2 and store.evicted == 1
    assert store.read(ids[0]) is None
    assert all((store.read(i) or b"")[:2] == b"\xff\xd8" for i in ids[1:])
    assert sorted(p.stem for p in store.directory.iterdir()) == sorted(ids[1:])


def test_retention_by_bytes_evicts_the_oldest_until_the_budget_holds(tmp_path: Path) -> None:
    probe = PictureStore(tmp_path / "probe", Limits())
    size = len(probe.read(probe.save(frame(0), boxes(0.9)) or "") or b"")
    assert size > 1000
    store = PictureStore(tmp_path / "pictures", Limits(max_bytes=int(size * 2.5)))
    ids = [store.save(frame(0), boxes(0.9)) for _ in range(4)]
    assert len(store) == 2 and store.total_bytes() <= size * 2.5
    assert [store.read(i) is not None for i in ids] == [False, False, True, True]


def test_a_restarted_store_indexes_what_is_on_disk_and_applies_new_limits(tmp_path: Path) -> None:
    first = PictureStore(tmp_path / "pictures", Limits())
    ids = [first.save(frame(i), boxes(0.9)) for i in range(3)]
    (tmp_path / "pictures" / "leftover.jpg.tmp").write_bytes(b"half")
    again = PictureStore(tmp_path / "pictures", Limits(max_count=2))
    assert len(again) == 2 and again.read(ids[0]) is None and again.read(ids[2]) is not None
    assert not (tmp_path / "pictures" / "leftover.jpg.tmp").exists()


def test_ids_that_are_not_picture_ids_are_never_read(tmp_path: Path) -> None:
    store = PictureStore(tmp_path / "pictures", Limits())
    (tmp_path / "secret.jpg").write_bytes(b"not yours")
    assert store.read("../secret") is None and store.read("") is None


def test_the_picture_is_the_frame_with_the_boxes_drawn(tmp_path: Path) -> None:
    store = PictureStore(tmp_path / "pictures", Limits(jpeg_quality=95))
    grey = np.full((120, 160, 3), 128, np.uint8)
    data = store.read(store.save(grey, boxes(0.9)) or "") or b""
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == grey.shape
    assert np.abs(picture[25:48, 10].astype(int) - 128).max() > 60  # the box's left edge
    assert np.abs(picture[80:110, 100:150].astype(int) - 128).max() < 8  # away from it


def test_a_full_disk_costs_the_picture_not_the_result_and_is_logged_once(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = PictureStore(tmp_path / "pictures", Limits())
    real_write = pictures.write_atomically

    def full(_path: Path, _data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pictures, "write_atomically", full)
    with capture_logs() as logs:
        assert store.save(frame(0), boxes(0.9)) is None and store.save(frame(1), boxes(0.9)) is None
        monkeypatch.setattr(pictures, "write_atomically", real_write)
        assert store.save(frame(2), boxes(0.9)) is not None
    events = [entry["event"] for entry in logs]
    assert events.count("picture not stored; results go out without image_url until a write works again") == 1
    assert "pictures are stored again" in events and store.failed == 2


def test_a_folder_that_cannot_be_made_leaves_results_without_pictures(tmp_path: Path) -> None:
    (tmp_path / "pictures").write_text("a file where the folder should be")
    with capture_logs() as logs:
        store = PictureStore(tmp_path / "pictures", Limits())
        assert store.save(frame(0), boxes(0.9)) is None
    assert [e["log_level"] for e in logs] == ["error"]


def test_the_keeper_links_pictures_only_once_a_station_serves_them(tmp_path: Path) -> None:
    thresholds = Thresholds({"scratch": 0.5}, band=0.1)
    keeper = PictureKeeper(PictureStore(tmp_path / "pictures", Limits()))
    fail = decide(boxes(0.9), thresholds)
    assert keeper.keep(fail, frame(0)) is None and keeper.store is not None and len(keeper.store) == 0
    keeper.base_url = "https://box1.plant:8443"
    url = keeper.keep(fail, frame(0))
    assert url is not None and url.startswith("https://box1.plant:8443/api/pictures/") and url.endswith(".jpg")
    assert keeper.keep(decide(boxes(0.1), thresholds), frame(0)) is None  # pass: no picture
    assert keeper_from_settings(Limits(), tmp_path / "off", station_enabled=False).store is None
    assert keeper_from_settings(Limits(enabled=False), tmp_path / "off", station_enabled=True).store is None
    assert not (tmp_path / "off").exists()
    on = keeper_from_settings(Limits(), tmp_path / "state", station_enabled=True).store
    assert on is not None and on.directory == tmp_path / "state" / "pictures" and on.directory.is_dir()


def test_a_frame_that_cannot_be_encoded_costs_only_its_picture(tmp_path: Path) -> None:
    store = PictureStore(tmp_path / "pictures", Limits())
    with capture_logs() as logs:
        assert store.save(np.zeros((0, 0, 3), np.uint8), boxes()) is None  # cv2.error, not an OSError
    assert store.failed == 1 and [e["log_level"] for e in logs] == ["error"]
    assert store.save(frame(0), boxes(0.9)) is not None
