"""Deterministic synthetic line-camera frames: textured surfaces with defects and their ground-truth boxes.

Used by tests, the demo model and the `synthetic:` camera source. Every frame is a pure function of
(seed, index, generator parameters), so a frame can be regenerated anywhere from its index alone.

Surfaces are fabric-like (a woven grid of threads) or brushed-metal-like (long horizontal streaks), with the
column-wise gain pattern of a line-scan sensor. Defects come in three drawing styles:
- `scratch`: a thin, slightly curved bright or dark line,
- `hole`: a dark, roughly round opening with a light rim,
- `stain`: a soft-edged, tinted irregular blob.
Class names other than the defaults are mapped to a style by keywords (crack -> scratch, pit -> hole, oil -> stain)
or else by a stable hash of the name; each name also gets its own tint and size so classes stay distinguishable.
Boxes are the tight bounding box of the pixels a defect changed (with drawing alpha > `_ALPHA_VISIBLE`).
Drift knobs (defaults leave frames unchanged): `lighting_gain`/`lighting_offset` (a new lamp or exposure),
`defect_scale` (defects that look different), `texture` (another surface).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.detections import Detections

DEFAULT_CLASSES: tuple[str, ...] = ("scratch", "hole", "stain")
TEXTURES: tuple[str, ...] = ("fabric", "metal", "mixed")
STYLES: tuple[str, ...] = ("scratch", "hole", "stain")
_STYLE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "scratch": ("scratch", "crack", "line", "cut", "tear", "fold", "wrinkle", "streak", "break"),
    "hole": ("hole", "pit", "pin", "dot", "puncture", "void", "bubble", "knot", "short", "open"),
    "stain": ("stain", "oil", "dirt", "spot", "blob", "mark", "smudge", "rust", "burn", "spur", "copper"),
}
_ALPHA_VISIBLE = 0.2
_MAX_PLACEMENT_TRIES = 20
Image = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SyntheticFrame:
    """One generated frame and its ground truth (scores 1.0, class names = the generator's classes)."""

    image: Image
    detections: Detections
    index: int


@dataclass(frozen=True)
class _ClassStyle:
    """How one class name is drawn: a style, a tint (BGR offsets) and a size factor."""

    style: str
    tint: tuple[float, float, float]
    scale: float


def style_for_class(name: str) -> str:
    """The drawing style for a class name: keyword match first, else a stable hash of the name."""
    lowered = name.lower()
    for style, words in _STYLE_KEYWORDS.items():
        if any(word in lowered for word in words):
            return style
    return STYLES[zlib.crc32(name.encode("utf-8")) % len(STYLES)]


def _class_style(name: str, position: int) -> _ClassStyle:
    style = style_for_class(name)
    if name in DEFAULT_CLASSES:
        return _ClassStyle(style, (0.0, 0.0, 0.0), 1.0)
    # A per-name tint and size keep two custom classes of the same style apart.
    rng = np.random.default_rng(zlib.crc32(f"{position}:{name}".encode()))
    tint = tuple(float(v) for v in rng.uniform(-60, 60, size=3))
    return _ClassStyle(style, (tint[0], tint[1], tint[2]), float(rng.uniform(0.8, 1.25)))


class SyntheticGenerator:
    """Frames `frame(0)`, `frame(1)`, ... of textured surfaces with 0..`max_defects` defects each."""

    def __init__(
        self,
        seed: int = 0,
        size: int = 256,
        classes: Sequence[str] = DEFAULT_CLASSES,
        max_defects: int = 3,
        defect_free_fraction: float = 0.2,
        texture: str = "mixed",
        min_defects: int = 1,
        defect_scale: float = 1.0,
        lighting_gain: float = 1.0,
        lighting_offset: float = 0.0,
        with_masks: bool = False,
    ) -> None:
        self.seed = int(seed)
        self.size = int(size)
        self.classes = _validated_classes(classes)
        self.max_defects = int(max_defects)
        self.min_defects = int(min_defects)
        self.defect_free_fraction = float(defect_free_fraction)
        self.texture = texture
        self.defect_scale = float(defect_scale)
        self.lighting_gain = float(lighting_gain)
        self.lighting_offset = float(lighting_offset)
        self.with_masks = bool(with_masks)  # ground truth with instance masks (the visible pixels of each defect)
        self._validate()
        self._styles = [_class_style(name, i) for i, name in enumerate(self.classes)]
        self._column_gain = _column_gain(self.seed, self.size)

    def _validate(self) -> None:
        if self.size < 32:
            raise ValueError(f"size={self.size}: must be at least 32 pixels")
        if self.max_defects < 0:
            raise ValueError(f"max_defects={self.max_defects}: must be >= 0")
        if not 1 <= self.min_defects <= max(self.max_defects, 1):
            raise ValueError(f"min_defects={self.min_defects}: must be between 1 and max_defects={self.max_defects}")
        if not 0.0 <= self.defect_free_fraction <= 1.0:
            raise ValueError(f"defect_free_fraction={self.defect_free_fraction}: must be between 0 and 1")
        if self.texture not in TEXTURES:
            raise ValueError(f"texture={self.texture!r}: must be one of {list(TEXTURES)}")
        if not 0.25 <= self.defect_scale <= 3.0:
            raise ValueError(f"defect_scale={self.defect_scale}: must be between 0.25 and 3")
        if not 0.1 <= self.lighting_gain <= 3.0:
            raise ValueError(f"lighting_gain={self.lighting_gain}: must be between 0.1 and 3")
        if not -128.0 <= self.lighting_offset <= 128.0:
            raise ValueError(f"lighting_offset={self.lighting_offset}: must be between -128 and 128")

    def __iter__(self) -> Iterator[SyntheticFrame]:
        index = 0
        while True:
            yield self.frame(index)
            index += 1

    def frames(self, count: int, start: int = 0) -> list[SyntheticFrame]:
        """`count` consecutive frames from index `start`."""
        return [self.frame(i) for i in range(start, start + count)]

    def frame(self, index: int) -> SyntheticFrame:
        """Frame number `index`: the same (seed, index, parameters) always give identical pixels and boxes."""
        if index < 0:
            raise ValueError(f"index={index}: frame indices start at 0")
        rng = np.random.default_rng([self.seed, index])
        surface = self._surface(rng)
        labels: list[int] = []
        boxes: list[tuple[int, int, int, int]] = []
        masks: list[npt.NDArray[np.bool_]] = []
        for _ in range(self._defect_count(rng)):
            class_id = int(rng.integers(len(self.classes)))
            placed = self._place_defect(rng, class_id, boxes)
            if placed is None:
                continue
            mask, box = placed
            surface = _composite(surface, mask, self._defect_colour(rng, class_id, surface, mask))
            labels.append(class_id)
            boxes.append(box)
            masks.append(mask > _ALPHA_VISIBLE)  # the pixels the tight box bounds
        image = np.clip(self._lit(surface), 0, 255).astype(np.uint8)
        instance_masks = np.asarray(masks, dtype=bool).reshape(-1, self.size, self.size) if self.with_masks else None
        detections = Detections(
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64),
            np.ones(len(labels), dtype=np.float32), self.classes, (self.size, self.size), mask=instance_masks,
        )
        return SyntheticFrame(image=image, detections=detections, index=index)

    # ----- surface --------------------------------------------------------------------------------------------------
    def _surface(self, rng: np.random.Generator) -> npt.NDArray[np.float32]:
        texture = self.texture
        if texture == "mixed":
            texture = "fabric" if rng.random() < 0.5 else "metal"
        base = _fabric(rng, self.size) if texture == "fabric" else _metal(rng, self.size)
        tone = rng.uniform(90, 170) + rng.uniform(-20, 20, size=3)
        surface = base[:, :, None] * 40.0 + tone[None, None, :]
        surface *= self._column_gain[None, :, None]
        return (surface + rng.normal(0, 3.0, size=surface.shape)).astype(np.float32)

    def _lit(self, surface: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The scene under the line's lighting: a new lamp or exposure scales and shifts every pixel (drift)."""
        if self.lighting_gain == 1.0 and self.lighting_offset == 0.0:
            return surface  # the default light leaves the pixels exactly as drawn
        return (surface * self.lighting_gain + self.lighting_offset).astype(np.float32)

    def _defect_count(self, rng: np.random.Generator) -> int:
        if self.max_defects == 0 or rng.random() < self.defect_free_fraction:
            return 0
        return int(rng.integers(self.min_defects, self.max_defects + 1))

    # ----- defects --------------------------------------------------------------------------------------------------
    def _place_defect(
        self, rng: np.random.Generator, class_id: int, taken: list[tuple[int, int, int, int]]
    ) -> tuple[Mask, tuple[int, int, int, int]] | None:
        """Draw a defect mask that does not touch earlier defects; None if no free spot was found."""
        style = self._styles[class_id]
        for _ in range(_MAX_PLACEMENT_TRIES):
            mask = _DRAWERS[style.style](rng, self.size, style.scale * self.defect_scale)
            box = _tight_box(mask)
            if box is not None and not any(_boxes_touch(box, other) for other in taken):
                return mask, box
        return None

    def _defect_colour(
        self, rng: np.random.Generator, class_id: int, surface: npt.NDArray[np.float32], mask: Mask
    ) -> npt.NDArray[np.float32]:
        """Target BGR colour of the defect, chosen to contrast with the surface under it."""
        style = self._styles[class_id]
        under = surface[mask > _ALPHA_VISIBLE].mean(axis=0) if (mask > _ALPHA_VISIBLE).any() else surface.mean((0, 1))
        if style.style == "hole":
            colour = np.full(3, rng.uniform(5, 35))
        elif style.style == "scratch":
            bright = rng.random() < 0.6
            colour = under + (rng.uniform(70, 110) if bright else -rng.uniform(60, 90))
        else:
            colour = under * rng.uniform(0.35, 0.55) + np.array([10.0, 40.0, 60.0])
        return np.clip(colour + np.asarray(style.tint), 0, 255).astype(np.float32)


def _scratch(rng: np.random.Generator, size: int, scale: float) -> Mask:
    """A thin, slightly bent line; its angle keeps both box sides at least a quarter of its length."""
    length = rng.uniform(0.22, 0.45) * size * scale
    angle = rng.uniform(np.deg2rad(20), np.deg2rad(70)) * rng.choice([-1, 1])
    start = rng.uniform(0.05, 0.95, size=2) * size
    direction = np.array([np.cos(angle), np.sin(angle)])
    end = np.clip(start + direction * length, 2, size - 3)
    bend = (rng.uniform(-0.08, 0.08) * length) * np.array([-direction[1], direction[0]])
    t = np.linspace(0.0, 1.0, 16)[:, None]
    points = start * (1 - t) + end * t + bend * 4 * t * (1 - t)
    mask = np.zeros((size, size), np.float32)
    thickness = max(1, round(rng.uniform(1.5, 3.0) * size / 256))
    cv2.polylines(mask, [np.round(points).astype(np.int32)], False, 1.0, thickness, cv2.LINE_AA)
    return mask


def _hole(rng: np.random.Generator, size: int, scale: float) -> Mask:
    """A dark, slightly elliptical opening."""
    radius = rng.uniform(0.035, 0.075) * size * scale
    centre = rng.uniform(radius + 2, size - radius - 2, size=2)
    axes = (max(2, round(radius * rng.uniform(0.8, 1.2))), max(2, round(radius * rng.uniform(0.8, 1.2))))
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, tuple(int(v) for v in np.round(centre)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1,
                cv2.LINE_AA)
    return mask


def _stain(rng: np.random.Generator, size: int, scale: float) -> Mask:
    """A soft-edged irregular blob made of a few overlapping ellipses."""
    radius = rng.uniform(0.06, 0.12) * size * scale
    centre = rng.uniform(radius * 1.4 + 2, size - radius * 1.4 - 2, size=2)
    mask = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 6))):
        offset = rng.normal(0, radius * 0.35, size=2)
        axes = (max(2, round(radius * rng.uniform(0.45, 0.8))), max(2, round(radius * rng.uniform(0.45, 0.8))))
        cv2.ellipse(mask, tuple(int(v) for v in np.round(centre + offset)), axes, float(rng.uniform(0, 180)), 0,
                    360, 1.0, -1, cv2.LINE_AA)
    blur = max(3, int(radius * 0.3) | 1)
    return np.asarray(cv2.GaussianBlur(mask, (blur, blur), 0) * 0.85, dtype=np.float32)


_DRAWERS = {"scratch": _scratch, "hole": _hole, "stain": _stain}


def _fabric(rng: np.random.Generator, size: int) -> npt.NDArray[np.float32]:
    """Woven texture: crossing warp/weft threads with per-thread brightness jitter, values about -1..1."""
    period = rng.uniform(5.0, 9.0) * size / 256
    coords = np.arange(size, dtype=np.float32)
    n_threads = int(size / period) + 2
    warp_jitter = rng.normal(0, 0.25, size=n_threads)[(coords / period).astype(int)]
    weft_jitter = rng.normal(0, 0.25, size=n_threads)[(coords / period).astype(int)]
    warp = np.sin(2 * np.pi * coords / period)[None, :] + warp_jitter[None, :]
    weft = np.sin(2 * np.pi * coords / period + rng.uniform(0, np.pi))[:, None] + weft_jitter[:, None]
    checker = np.sign(np.sin(np.pi * coords / period))[None, :] * np.sign(np.sin(np.pi * coords / period))[:, None]
    return (0.5 * np.where(checker > 0, warp, weft) + 0.2 * (warp + weft)).astype(np.float32)


def _metal(rng: np.random.Generator, size: int) -> npt.NDArray[np.float32]:
    """Brushed metal: noise smeared along the rolling direction (horizontal), plus a soft sheen."""
    noise = rng.normal(0, 1.0, size=(size, size)).astype(np.float32)
    streak_len = max(9, int(size * rng.uniform(0.2, 0.5)) | 1)
    streaks = cv2.blur(noise, (streak_len, 1)) * np.sqrt(streak_len) * 0.35
    sheen = np.linspace(-0.6, 0.6, size, dtype=np.float32)[:, None] * rng.uniform(-1, 1)
    return np.asarray(streaks + sheen, dtype=np.float32)


def _column_gain(seed: int, size: int) -> npt.NDArray[np.float64]:
    """Per-column gain of a line-scan sensor (fixed for a generator seed), around 1.0."""
    rng = np.random.default_rng([seed, 0x11AE])
    gain = 1.0 + rng.normal(0, 0.015, size=size)
    return np.asarray(gain * (1.0 + 0.05 * np.cos(np.linspace(-np.pi / 2, np.pi / 2, size))), dtype=np.float64)


def _composite(
    surface: npt.NDArray[np.float32], mask: Mask, colour: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    alpha = mask[:, :, None]
    return (surface * (1 - alpha) + colour[None, None, :] * alpha).astype(np.float32)


def _tight_box(mask: Mask) -> tuple[int, int, int, int] | None:
    """xyxy of the visible pixels (x2/y2 exclusive, so a one-pixel defect is one pixel wide); None if invisible."""
    ys, xs = np.nonzero(mask > _ALPHA_VISIBLE)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _boxes_touch(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 2) -> bool:
    return a[0] < b[2] + margin and b[0] < a[2] + margin and a[1] < b[3] + margin and b[1] < a[3] + margin


def _validated_classes(classes: Sequence[str]) -> tuple[str, ...]:
    names = tuple(classes)
    if not names:
        raise ValueError("classes: at least one class name is needed")
    for name in names:
        if not isinstance(name, str) or not name.strip() or name != name.strip() or any(c in name for c in "<>|,="):
            raise ValueError(f"classes: bad class name {name!r} (non-empty, no surrounding spaces, none of <>|,=)")
    if len(set(names)) != len(names):
        raise ValueError(f"classes: duplicate class names in {list(names)}")
    return names


# ----- URIs ---------------------------------------------------------------------------------------------------------
_URI_FIELDS: dict[str, type] = {
    "seed": int, "size": int, "max_defects": int, "min_defects": int,
    "defect_free_fraction": float, "defect_scale": float, "texture": str, "classes": tuple,
    "lighting_gain": float, "lighting_offset": float,
}


def parse_synthetic_uri(uri: str) -> dict[str, Any]:
    """`synthetic:seed=1,size=256,classes=scratch|hole` -> keyword arguments for `SyntheticGenerator`.

    `synthetic:` (or `synthetic://`) alone gives the defaults. Raises ValueError naming the bad key or value.
    """
    if not uri.startswith("synthetic:"):
        raise ValueError(f"{uri!r}: a synthetic source URI starts with 'synthetic:'")
    body = uri[len("synthetic:"):].removeprefix("//")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"{uri!r}: {item!r} is not key=value")
        if key not in _URI_FIELDS:
            raise ValueError(f"{uri!r}: unknown key {key!r}; known keys: {sorted(_URI_FIELDS)}")
        if key in kwargs:
            raise ValueError(f"{uri!r}: key {key!r} given twice")
        kwargs[key] = _uri_value(uri, key, value)
    SyntheticGenerator(**kwargs)  # validates the combination; errors name the bad value
    return kwargs


def _uri_value(uri: str, key: str, value: str) -> Any:
    kind = _URI_FIELDS[key]
    if kind is tuple:
        return tuple(name.strip() for name in value.split("|"))
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{uri!r}: {key}={value!r} is not a valid {kind.__name__}") from None
