"""Specification of the synthetic defect-frame generator."""

from __future__ import annotations

import numpy as np
import pytest

from agent.capture.synthetic import (
    DEFAULT_CLASSES,
    SyntheticGenerator,
    parse_synthetic_uri,
    style_for_class,
)
from agent.detections import box_iou


def test_same_seed_and_index_give_identical_pixels_and_boxes() -> None:
    a = SyntheticGenerator(seed=3).frame(7)
    b = SyntheticGenerator(seed=3).frame(7)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.detections.xyxy, b.detections.xyxy)
    assert np.array_equal(a.detections.class_id, b.detections.class_id)


def test_frame_is_independent_of_the_order_frames_are_drawn() -> None:
    gen = SyntheticGenerator(seed=1)
    later = gen.frame(5)
    iterated = next(f for f in gen if f.index == 5)
    assert np.array_equal(later.image, iterated.image)


def test_different_seeds_or_indices_give_different_frames() -> None:
    assert not np.array_equal(SyntheticGenerator(seed=0).frame(0).image, SyntheticGenerator(seed=1).frame(0).image)
    gen = SyntheticGenerator(seed=0)
    assert not np.array_equal(gen.frame(0).image, gen.frame(1).image)


@pytest.mark.parametrize("texture", ["fabric", "metal", "mixed"])
def test_frames_are_bgr_uint8_of_the_requested_size(texture: str) -> None:
    frame = SyntheticGenerator(size=128, texture=texture).frame(0)
    assert frame.image.shape == (128, 128, 3)
    assert frame.image.dtype == np.uint8
    assert frame.detections.image_size == (128, 128)
    assert frame.detections.class_names == DEFAULT_CLASSES
    assert np.all(frame.detections.score == 1.0)


def test_boxes_lie_inside_the_image_and_are_non_degenerate() -> None:
    for frame in SyntheticGenerator(seed=2, size=192).frames(40):
        xyxy = frame.detections.xyxy
        assert np.all(xyxy >= 0) and np.all(xyxy <= 192)
        assert np.all(xyxy[:, 2] > xyxy[:, 0]) and np.all(xyxy[:, 3] > xyxy[:, 1])


def test_boxes_are_tight_around_the_changed_pixels() -> None:
    """Pixels just outside every box edge look like the defect-free surface; pixels inside differ."""
    gen = SyntheticGenerator(seed=4, defect_free_fraction=0.0, max_defects=1, texture="metal")
    for frame in gen.frames(10):
        (x1, y1, x2, y2) = (int(v) for v in frame.detections.xyxy[0])
        crop = frame.image[y1:y2, x1:x2].astype(float)
        ring = np.concatenate([
            frame.image[max(y1 - 3, 0):y1, x1:x2].reshape(-1, 3), frame.image[y2:y2 + 3, x1:x2].reshape(-1, 3),
            frame.image[y1:y2, max(x1 - 3, 0):x1].reshape(-1, 3), frame.image[y1:y2, x2:x2 + 3].reshape(-1, 3),
        ]).astype(float)
        # the defect changes some pixels inside the box by far more than the texture's own variation
        assert np.abs(crop - np.median(ring, axis=0)).max() > 40
        # and the border pixels inside the box each hold some of the defect: the box cannot shrink
        assert np.abs(crop[0] - crop[0].mean(0)).max() > 0 and np.abs(crop[:, 0] - crop[:, 0].mean(0)).max() > 0


def test_defects_of_one_frame_do_not_overlap() -> None:
    for frame in SyntheticGenerator(seed=5, max_defects=4).frames(30):
        iou = box_iou(frame.detections.xyxy, frame.detections.xyxy)
        np.fill_diagonal(iou, 0.0)
        assert np.all(iou == 0.0)


def test_every_class_appears_and_defect_free_frames_occur() -> None:
    frames = SyntheticGenerator(seed=0, defect_free_fraction=0.2).frames(60)
    seen = {label for f in frames for label in f.detections.labels}
    empty = sum(len(f.detections) == 0 for f in frames)
    assert seen == set(DEFAULT_CLASSES)
    assert 3 <= empty <= 25


def test_defect_free_fraction_one_gives_only_clean_frames_and_zero_gives_none() -> None:
    assert all(len(f.detections) == 0 for f in SyntheticGenerator(defect_free_fraction=1.0).frames(10))
    assert all(len(f.detections) >= 1 for f in SyntheticGenerator(defect_free_fraction=0.0).frames(20))


def test_defect_count_stays_within_min_and_max() -> None:
    counts = [len(f.detections) for f in SyntheticGenerator(max_defects=2, defect_free_fraction=0.0).frames(30)]
    assert min(counts) >= 1 and max(counts) <= 2


def test_custom_class_names_are_drawn_and_reported() -> None:
    classes = ("crack", "oil", "widget-flaw", "pinhole")
    frames = SyntheticGenerator(seed=1, classes=classes, defect_free_fraction=0.0).frames(40)
    assert frames[0].detections.class_names == classes
    assert {label for f in frames for label in f.detections.labels} == set(classes)


def test_class_names_map_to_drawing_styles_by_keyword_else_stably() -> None:
    assert style_for_class("crack") == "scratch"
    assert style_for_class("pinhole") == "hole"
    assert style_for_class("oil_spot") == "stain"
    assert style_for_class("widget-flaw") == style_for_class("widget-flaw")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 8}, "size=8"),
        ({"classes": ()}, "at least one class"),
        ({"classes": ("a", "a")}, "duplicate"),
        ({"classes": ("bad<loc>",)}, "bad<loc>"),
        ({"texture": "wood"}, "texture='wood'"),
        ({"defect_free_fraction": 1.5}, "defect_free_fraction=1.5"),
        ({"max_defects": -1}, "max_defects=-1"),
        ({"lighting_gain": 0.0}, "lighting_gain=0.0"),
        ({"lighting_offset": 200.0}, "lighting_offset=200.0"),
    ],
)
def test_bad_parameters_raise_naming_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SyntheticGenerator(**kwargs)  # type: ignore[arg-type]


def test_default_lighting_leaves_frames_exactly_as_drawn() -> None:
    plain, lit = SyntheticGenerator(seed=4).frame(3), SyntheticGenerator(seed=4, lighting_gain=1.0).frame(3)
    assert np.array_equal(plain.image, lit.image)


def test_new_lighting_changes_the_pixels_but_not_the_defects() -> None:
    plain = SyntheticGenerator(seed=4, size=64).frame(3)
    brighter = SyntheticGenerator(seed=4, size=64, lighting_gain=1.3, lighting_offset=20).frame(3)
    assert brighter.image.astype(float).mean() > plain.image.astype(float).mean() + 20
    assert np.array_equal(brighter.detections.xyxy, plain.detections.xyxy)
    assert list(brighter.detections.labels) == list(plain.detections.labels)


def test_lighting_is_a_uri_key() -> None:
    kwargs = parse_synthetic_uri("synthetic:lighting_gain=0.6,lighting_offset=-10")
    assert kwargs == {"lighting_gain": 0.6, "lighting_offset": -10.0}


def test_negative_index_is_rejected() -> None:
    with pytest.raises(ValueError, match="index=-1"):
        SyntheticGenerator().frame(-1)


def test_uri_gives_generator_keyword_arguments() -> None:
    kwargs = parse_synthetic_uri("synthetic:seed=1,size=128,classes=scratch|hole,texture=metal")
    assert kwargs == {"seed": 1, "size": 128, "classes": ("scratch", "hole"), "texture": "metal"}
    assert SyntheticGenerator(**kwargs).frame(0).image.shape == (128, 128, 3)


def test_bare_uri_gives_defaults() -> None:
    assert parse_synthetic_uri("synthetic:") == {}
    assert parse_synthetic_uri("synthetic://seed=2") == {"seed": 2}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("file:/x", "starts with 'synthetic:'"),
        ("synthetic:colour=red", "unknown key 'colour'"),
        ("synthetic:seed=abc", "seed='abc'"),
        ("synthetic:seed", "'seed' is not key=value"),
        ("synthetic:seed=1,seed=2", "'seed' given twice"),
        ("synthetic:texture=wood", "texture='wood'"),
        ("synthetic:defect_free_fraction=2", "defect_free_fraction=2"),
    ],
)
def test_bad_uri_raises_naming_key_or_value(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_synthetic_uri(uri)
