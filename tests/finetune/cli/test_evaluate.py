"""`edge-inspect evaluate`'s own parts: the --thresholds syntax and the terminal summary (the end-to-end run is in
tests/finetune/test_evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from finetune.cli.evaluate import parse_thresholds, summary


@pytest.mark.parametrize(("text", "expected"), [("0.4", 0.4), (" 1 ", 1.0),
                                                 ("scratch=0.4,hole=0.6", {"scratch": 0.4, "hole": 0.6}),
                                                 ("scratch = 0.4, ,hole=1", {"scratch": 0.4, "hole": 1.0})])
def test_thresholds_are_one_number_or_class_value_pairs(text: str, expected: float | dict[str, float]) -> None:
    assert parse_thresholds(text) == expected


@pytest.mark.parametrize(("text", "named"), [("high", "'high' is neither a number nor class=value pairs"),
                                              ("scratch=0.4,hole=x", "threshold 'hole=x': 'x' is not a number")])
def test_a_malformed_threshold_is_named(text: str, named: str) -> None:
    with pytest.raises(typer.BadParameter, match=named):
        parse_thresholds(text)


def test_summary_gives_the_headline_numbers_and_where_the_report_is() -> None:
    metrics = {"images": 10, "gt_boxes": 12, "map": 0.41234, "map50": 0.6, "per_class": {"scratch": 0.5, "hole": None},
               "false_rejects": {"count": 1, "known_good_frames": 4, "rate": 0.25},
               "score_calibration": {"binning": "10 equal-width bins", "boxes": 14, "ece": 0.0812,
                                     "per_class_ece": {"scratch": 0.05, "hole": None}}}
    assert summary(metrics, Path("out")) == ("10 images, 12 boxes: mAP 0.412, mAP50 0.600\n"
                                            "AP per class: scratch 0.500, hole -\n"
                                            "false rejects: 1 of 4 known-good frames (25.0%)\n"
                                            "score calibration error (ECE, 10 equal-width bins, 14 boxes): 0.081; "
                                            "per class: scratch 0.050, hole -\n"
                                            "report written to out/metrics.json")
    metrics["false_rejects"] = {"count": 0, "known_good_frames": 0, "rate": None}
    assert "false rejects: 0 of 0 known-good frames (n/a)" in summary(metrics, Path("out"))
