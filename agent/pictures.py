"""Pictures of fail/uncertain frames: annotated JPEGs under `{state_dir}/pictures/`, the target of results' `image_url`.

The results stage (never the inference thread) draws the published boxes on the frame, writes the JPEG atomically and
evicts the oldest pictures beyond `pictures.max_count` / `pictures.max_bytes`; the station serves them at
`/api/pictures/{id}.jpg` (agent/station/routes_pictures.py). A picture is written *before* its result is stored, so a
result's `image_url` never points at a file that is not there yet (only at one evicted since). A disk that refuses
the write (full, read-only) costs the result its `image_url`, never the result itself; it is logged once until a
write works again.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
import structlog

from agent.annotate import draw_detections
from agent.decide import Decision
from agent.detections import Detections
from agent.statedir import StateDir

log = structlog.get_logger("agent.pictures")

PICTURE_ID = re.compile(r"^[0-9]{20}-[0-9a-f]{8}$")  # capture-order sortable, unguessable: ns time + random suffix
ROUTE = "/api/pictures"  # the station's route; agent/station/routes_pictures.py serves `{ROUTE}/{id}.jpg`


class PictureLimits(Protocol):
    """What the `pictures` config section says (agent/config/sections.py:PicturesConfig; not imported: the station
    imports this module and must not depend on the config package)."""

    enabled: bool
    max_count: int
    max_bytes: int
    jpeg_quality: int


def new_picture_id() -> str:
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}"


def picture_boxes(decision: Decision) -> Detections | None:
    """The boxes the result publishes (and the picture shows), or None for a `pass`: no picture."""
    if decision.verdict == "fail":
        return decision.defects
    if decision.verdict == "uncertain":
        return decision.uncertain  # every box in the band, above-threshold ones included
    return None


class PictureStore:
    """Annotated JPEGs by id, oldest evicted beyond `max_count` pictures or `max_bytes` bytes; thread-safe (the results
    thread writes, the station's threads read)."""

    def __init__(self, directory: Path, config: PictureLimits) -> None:
        self.directory = directory
        self.config = config
        self._sizes: OrderedDict[str, int] = OrderedDict()  # id -> bytes, oldest first
        self._lock = threading.Lock()
        self._failing = False
        self.evicted = 0
        self.failed = 0
        try:
            self._load()
        except OSError as exc:  # an unusable folder only costs image_url; inspection goes on
            self._refused(exc)

    def _load(self) -> None:
        """Index the pictures already on disk (ids sort by capture time) and drop half-written leftovers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.directory.iterdir()):
            if path.suffix == ".jpg" and PICTURE_ID.match(path.stem):
                self._sizes[path.stem] = path.stat().st_size
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        with self._lock:
            self._evict_over_budget()

    def __len__(self) -> int:
        return len(self._sizes)

    def total_bytes(self) -> int:
        return sum(self._sizes.values())

    def save(self, image: npt.NDArray[np.uint8], boxes: Detections) -> str | None:
        """Store `image` with `boxes` drawn; its id, or None when the disk refused it (logged once per outage)."""
        ident = new_picture_id()
        try:
            data = encode_jpeg(draw_detections(image, boxes), self.config.jpeg_quality)
            write_atomically(self.path(ident), data)
        except Exception as exc:  # a full disk, or any drawing/encoding failure: it must never cost the result
            self._refused(exc)
            return None
        if self._failing:
            self._failing = False
            log.info("pictures are stored again", directory=str(self.directory))
        with self._lock:
            self._sizes[ident] = len(data)
            self._evict_over_budget()
            return ident if ident in self._sizes else None

    def read(self, ident: str) -> bytes | None:
        """The JPEG of picture `ident`, or None when there is no such picture (never was, or evicted)."""
        if not PICTURE_ID.match(ident):
            return None
        try:
            return self.path(ident).read_bytes()
        except OSError:
            return None

    def path(self, ident: str) -> Path:
        return self.directory / f"{ident}.jpg"

    def _evict_over_budget(self) -> None:
        """Remove the oldest pictures until both budgets hold (caller holds the lock)."""
        total = sum(self._sizes.values())
        while self._sizes and (len(self._sizes) > self.config.max_count or total > self.config.max_bytes):
            oldest, size = self._sizes.popitem(last=False)
            self.path(oldest).unlink(missing_ok=True)
            total -= size
            self.evicted += 1

    def _refused(self, exc: Exception) -> None:
        self.failed += 1
        if not self._failing:
            self._failing = True
            log.error("picture not stored; results go out without image_url until a write works again",
                      directory=str(self.directory), error=str(exc))


class PictureKeeper:
    """The daemon's side: a picture for each fail/uncertain result, and its URL once the station serves them."""

    def __init__(self, store: PictureStore | None) -> None:
        self.store = store  # None: pictures disabled
        self.base_url: str | None = None  # set once the station is up; None: no station, no pictures

    def keep(self, decision: Decision, image: npt.NDArray[np.uint8]) -> str | None:
        """The `image_url` of this result (its picture stored now), or None: pass, no station, or the disk refused."""
        boxes = picture_boxes(decision)
        if boxes is None or self.store is None or self.base_url is None:
            return None
        ident = self.store.save(image, boxes)
        return f"{self.base_url}{ROUTE}/{ident}.jpg" if ident is not None else None


def encode_jpeg(image: npt.NDArray[np.uint8], quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"JPEG encoding failed for an image of shape {image.shape}")
    return buffer.tobytes()


def write_atomically(path: Path, data: bytes) -> None:
    """Temporary sibling, then rename: the station never serves half a picture."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def keeper_from_settings(config: PictureLimits, state_dir: Path, station_enabled: bool) -> PictureKeeper:
    """Pictures (in `state_dir`'s pictures folder) only where a station can serve them: none with it disabled."""
    store = PictureStore(StateDir(state_dir).pictures, config) if config.enabled and station_enabled else None
    return PictureKeeper(store)
