"""PaliGemma's detection text: y1 x1 y2 x2 location bins, ` ; ` between boxes, read like supervision's own parser."""

from __future__ import annotations

import re

import numpy as np
import pytest
import supervision as sv

from agent.detections import Detections
from agent.detector.paligemma.dialect import (
    AnswerError,
    check_class_names,
    detect_prompt,
    parse_answer,
    prompt_classes,
    to_answer,
    to_bins,
)

CLASSES = ("scratch", "hole", "oil stain")
SIZE = (640, 480)
HALF_BIN = np.array([SIZE[0], SIZE[1], SIZE[0], SIZE[1]]) / 1024 / 2


def dets(labels: list[str], boxes: list[list[float]], size: tuple[int, int] = SIZE) -> Detections:
    return Detections.from_labels(labels, np.asarray(boxes, dtype=np.float32).reshape(-1, 4), CLASSES, size)


def test_an_answer_writes_y1_x1_y2_x2_bins_then_the_class_and_separates_boxes() -> None:
    text = to_answer(dets(["scratch", "oil stain"], [[64, 48, 320, 240], [0, 0, 639.9, 479.9]]))
    # x 64/640 -> bin 102, y 48/480 -> bin 102; x 320/640 -> 512, y 240/480 -> 512
    assert text == "<loc0102><loc0102><loc0512><loc0512> scratch ; <loc0000><loc0000><loc1023><loc1023> oil stain"


def test_answer_round_trip_moves_a_coordinate_by_at_most_half_a_bin() -> None:
    rng = np.random.default_rng(0)
    xy1 = rng.uniform(0, 300, (20, 2))
    boxes = np.concatenate([xy1, xy1 + rng.uniform(1, 150, (20, 2))], axis=1)
    original = dets([CLASSES[i % 3] for i in range(20)], boxes.tolist())
    back = parse_answer(to_answer(original), CLASSES, SIZE)
    assert back.labels == original.labels
    assert np.all(np.abs(back.xyxy - original.xyxy) <= HALF_BIN + 1e-3)
    np.testing.assert_array_equal(to_bins(back), to_bins(original))


@pytest.mark.parametrize("text", [
    "<loc0256><loc0100><loc0768><loc0900> oil stain ; <loc0001><loc0002><loc0003><loc0004> hole",
    "<loc0000><loc0000><loc1023><loc1023> scratch",
    "<loc0500><loc0010><loc0501><loc1000> hole ; <loc0500><loc0010><loc0501><loc1000> hole<eos>",
    "",
])
def test_parsing_agrees_with_supervisions_paligemma_parser(text: str) -> None:
    ours = parse_answer(text, CLASSES, SIZE)
    theirs = sv.Detections.from_vlm(sv.VLM.PALIGEMMA, text, resolution_wh=SIZE, classes=list(CLASSES))
    assert ours.labels == list(theirs.data["class_name"])
    np.testing.assert_array_equal(ours.class_id, theirs.class_id)
    # same boxes, ours read at the bin's centre, supervision's at its lower edge: exactly half a bin apart
    np.testing.assert_allclose(ours.xyxy, theirs.xyxy.reshape(-1, 4) + HALF_BIN, atol=1e-3)


def test_what_we_write_supervision_reads_back_as_the_same_boxes() -> None:
    original = dets(["hole", "oil stain", "scratch"], [[10, 20, 30, 40], [100, 50, 600, 470], [5.5, 6.5, 7.5, 8.5]])
    theirs = sv.Detections.from_vlm(sv.VLM.PALIGEMMA, to_answer(original), resolution_wh=SIZE,
                                    classes=list(CLASSES))
    assert list(theirs.data["class_name"]) == original.labels
    assert np.all(np.abs(theirs.xyxy + HALF_BIN - original.xyxy) <= HALF_BIN + 1e-3)


@pytest.mark.parametrize(("text", "message"), [
    ("<seg006><seg006><seg006>", r"not a PaliGemma detection answer: '<seg006><seg006><seg006>'"),
    ("<loc0100><loc0100><loc0200> hole", r"cannot read '<loc0100><loc0100><loc0200> hole'"),
    ("<loc0100><loc0100><loc0200><loc0200> dent", r"unknown class 'dent' in PaliGemma answer '<loc0100>"),
    ("<loc0100><loc0100><loc2000><loc0200> hole", r"box \[100, 100, 2000, 200\] .* is not a box"),
    ("<loc0300><loc0100><loc0200><loc0200> hole", r"box \[300, 100, 200, 200\] .*y2 >= y1"),
    ("a cat ; <loc0100><loc0100><loc0200><loc0200> hole", r"cannot read 'a cat'"),
    ("\n\n\n", r"not a PaliGemma detection answer: '\\n\\n\\n'"),
])
def test_an_answer_that_does_not_parse_is_an_error_quoting_it(text: str, message: str) -> None:
    with pytest.raises(AnswerError, match=message):
        parse_answer(text, CLASSES, SIZE)


def test_an_empty_answer_is_a_frame_without_defects() -> None:
    assert len(parse_answer("<eos>", CLASSES, SIZE)) == 0
    assert len(parse_answer("  ", CLASSES, SIZE)) == 0


def test_the_prompt_lists_the_classes_and_reads_back() -> None:
    assert detect_prompt(CLASSES) == "detect scratch ; hole ; oil stain"
    assert prompt_classes(detect_prompt(CLASSES)) == list(CLASSES)
    assert prompt_classes("caption en") is None and prompt_classes("detect ") is None


@pytest.mark.parametrize("name", ["a;b", "<x>", " pad", "", "two\nlines"])
def test_class_names_the_dialect_cannot_carry_are_refused_naming_them(name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"class name {name!r}")):
        check_class_names(["hole", name])
