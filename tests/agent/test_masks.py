"""Instance masks: COCO RLE on disk (lossless), outline polygons and `area_px` in messages, checked against frames."""

from __future__ import annotations

from datetime import datetime, timezone

import jsonschema
import numpy as np
import pytest

from agent.detections import Detections, DetectionsError
from agent.masks import MaskError, decode_rle, encode_rle, mask_boxes, polygons
from agent.publish.result import build_result, result_schema

CLASSES = ("scratch", "hole", "stain")


def blob_masks() -> np.ndarray:
    masks = np.zeros((3, 40, 60), dtype=bool)
    masks[0, 5:15, 10:30] = True  # a rectangle
    masks[1, 20:35, 40:55] = True
    masks[1, 25:30, 45:50] = False  # with a hole
    masks[2, 0, 0] = True  # one pixel
    masks[2, 39, 59] = True  # and a second part, far away
    return masks


def masked() -> Detections:
    masks = blob_masks()
    return Detections(mask_boxes(masks), [0, 1, 2], [0.9, 0.6, 0.3], CLASSES, (60, 40), mask=masks)


def test_rle_round_trip_is_lossless() -> None:
    masks = blob_masks()
    rles = encode_rle(masks)
    assert [r["size"] for r in rles] == [[40, 60]] * 3 and all(isinstance(r["counts"], str) for r in rles)
    np.testing.assert_array_equal(decode_rle(rles, (60, 40)), masks)


def test_rle_of_another_frame_size_names_both() -> None:
    with pytest.raises(MaskError, match=r"RLE size \[40, 60\].*32x32 frame"):
        decode_rle(encode_rle(blob_masks()), (32, 32))


def test_uncompressed_coco_rle_is_read_and_a_bad_one_refused() -> None:
    rle = {"size": [4, 5], "counts": [6, 3, 11]}  # column-major: 6 off, 3 on, 11 off
    mask = decode_rle([rle], (5, 4))[0]
    assert mask.sum() == 3 and mask[2:4, 1].all() and mask[0, 2]
    with pytest.raises(MaskError, match="does not decode"):
        decode_rle([{"size": [4, 5], "counts": [6, 3]}], (5, 4))


def test_polygons_outline_each_part() -> None:
    masks = blob_masks()
    assert polygons(masks[0]) == [[[10, 5], [10, 14], [29, 14], [29, 5]]]
    assert len(polygons(masks[2])) == 2 and all(len(p) >= 3 for p in polygons(masks[2]))


def test_detections_carry_masks_through_slicing_scores_and_serialisation() -> None:
    dets = masked()
    np.testing.assert_array_equal(dets.area_px, [200, 225 - 25, 2])
    kept = dets[dets.score >= 0.5].with_scores([0.8, 0.7])
    assert kept.mask is not None and kept.mask.shape == (2, 40, 60) and kept.area_px.tolist() == [200, 200]
    back = Detections.deserialize(dets.serialize())
    np.testing.assert_array_equal(back.mask, dets.mask)
    np.testing.assert_array_equal(back.xyxy, dets.xyxy)


def test_boxes_without_masks_serialise_as_before() -> None:
    plain = Detections([[1, 2, 3, 4]], [0], [0.5], CLASSES, (60, 40))
    assert "masks" not in plain.serialize() and plain.area_px is None and plain.mask is None
    assert set(plain.to_json()[0]) == {"label", "score", "box", "box_norm"}
    assert Detections.deserialize(plain.serialize()).mask is None


def test_masks_that_do_not_fit_the_frame_are_refused() -> None:
    with pytest.raises(DetectionsError, match=r"masks of shape \(1, 20, 20\).*60x40 frame"):
        Detections([[1, 2, 3, 4]], [0], [0.5], CLASSES, (60, 40), mask=np.zeros((1, 20, 20), bool))


def test_result_with_masks_is_schema_valid_and_says_how_big() -> None:
    payload = build_result(seq=1, msg_id="m", device="d", camera="c", frame_id=0, part_id=None,
                           captured_at=datetime(2025, 1, 1, tzinfo=timezone.utc), model="m", verdict="fail",
                           detections=masked(), latency_ms=1.0)
    jsonschema.validate(payload, result_schema())
    first = payload["defects"][0]
    assert first["area_px"] == 200 and first["polygons"] == [[[10, 5], [10, 14], [29, 14], [29, 5]]]
    broken = {**payload, "defects": [{**first, "polygons": [[[1, 2], [3, 4]]]}]}  # two points are no outline
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, result_schema())
