"""Score calibration on held-out frames: ECE of a model's raw box scores, and after fitting the per-class calibration
(`calibration/score_calibration.py`) on other frames.

The detector runs on synthetic frames with ground truth (`agent.capture.synthetic.SyntheticGenerator`): one seed's
frames fit the calibration, another seed's measure it (held out). A box is real when it matches a ground-truth box
of its class at IoU >= 0.5, one to one (`finetune.metrics.class_pr_data`); ECE uses 10 equal-width score bins
(`finetune.reliability`). The noise floor is the ECE perfectly calibrated scores would show on as many held-out
boxes: a measured ECE near it is as good as this sample can tell.

    python -m bench.score_calibration                                  # models/demo, 100 + 100 frames
    python -m bench.score_calibration --model DIR --fit-frames 300 --test-frames 300

Writes bench/results/score_calibration_demo.json (`--out`) and the reliability diagrams before/after next to it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
TARGET_ECE = 0.05


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/demo"), help="model directory (with classes.txt)")
    parser.add_argument("--fit-frames", type=int, default=100, help="frames the calibration is fitted on")
    parser.add_argument("--test-frames", type=int, default=100, help="held-out frames it is measured on")
    parser.add_argument("--fit-seed", type=int, default=1001)
    parser.add_argument("--test-seed", type=int, default=2002)
    parser.add_argument("--size", type=int, default=None, help="frame size in pixels (default: the model's input)")
    parser.add_argument("--backend", default="torch-eager")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "score_calibration_demo.json")
    args = parser.parse_args(argv)
    for name in ("fit_frames", "test_frames", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    return args


def detect_frames(detector: Any, classes: Sequence[str], seed: int, count: int, size: int, batch: int
                  ) -> tuple[list[Any], list[Any]]:
    """(ground truth, raw predictions) on `count` synthetic frames of `seed`."""
    from agent.capture.synthetic import SyntheticGenerator

    frames = SyntheticGenerator(seed=seed, size=size, classes=classes).frames(count)
    predictions = [d for i in range(0, count, batch) for d in detector.detect([f.image for f in frames[i:i + batch]])]
    return [f.detections for f in frames], predictions


def summarise(pr: dict[str, Any]) -> dict[str, Any]:
    """ECE overall and per class, the noise floor of those scores, and AP@.5 (a check that ranking is unchanged)."""
    from finetune.reliability import OVERALL, class_reliability, expected_noise_ece

    curves = class_reliability(pr)
    scores = {name: data.scores for name, data in pr.items()}
    pooled = [s for values in scores.values() for s in values]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {"ece": rounded(curves[OVERALL].ece), "noise_floor": rounded(expected_noise_ece(pooled)),
            "boxes": curves[OVERALL].boxes,
            "per_class": {name: {"ece": rounded(curves[name].ece), "noise_floor": rounded(expected_noise_ece(s)),
                                 "boxes": len(s), "real": int(pr[name].tp.sum()), "ap50": rounded(pr[name].ap())}
                          for name, s in scores.items()}}


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The result JSON, and the held-out reliability curves before and after (for the plots)."""
    from agent.detector.factory import create_detector
    from agent.modeldir import read_class_names
    from calibration.score_calibration import calibrate_predictions, fit_calibration
    from finetune.metrics import class_pr_data
    from finetune.reliability import class_reliability

    classes = read_class_names(args.model)
    detector = create_detector(args.backend, args.model, None, classes, device=args.device)  # raw scores
    size = args.size or detector.image_size[0]  # type: ignore[attr-defined]
    started = time.perf_counter()
    fit_truth, fit_pred = detect_frames(detector, classes, args.fit_seed, args.fit_frames, size, args.batch)
    test_truth, test_pred = detect_frames(detector, classes, args.test_seed, args.test_frames, size, args.batch)
    calibration = fit_calibration(class_pr_data(fit_truth, fit_pred, classes))
    raw = class_pr_data(test_truth, test_pred, classes)
    calibrated = class_pr_data(test_truth, calibrate_predictions(test_pred, calibration), classes)
    before, after = summarise(raw), summarise(calibrated)
    result = {
        "model": str(args.model), "backend": args.backend, "frame_size": size, "classes": list(classes),
        "binning": "10 equal-width score bins", "real": "IoU >= 0.5 with a ground-truth box of its class, one to one",
        "fit": {"seed": args.fit_seed, "frames": args.fit_frames, "calibration": calibration.to_json()},
        "held_out": {"seed": args.test_seed, "frames": args.test_frames, "raw": before, "calibrated": after},
        "target_ece": TARGET_ECE, "target_met": after["ece"] is not None and after["ece"] <= TARGET_ECE,
        "seconds": round(time.perf_counter() - started, 1), "machine": platform.machine(),
    }
    return result, class_reliability(raw), class_reliability(calibrated)


def report(result: dict[str, Any]) -> str:
    held = result["held_out"]
    lines = [f"{result['model']}: fitted on {result['fit']['frames']} frames (seed {result['fit']['seed']}), measured "
             f"on {held['frames']} held-out frames (seed {held['seed']}), {held['raw']['boxes']} boxes"]
    for name in ("raw", "calibrated"):
        part = held[name]
        per_class = ", ".join(f"{c} {v['ece']}" for c, v in part["per_class"].items())
        lines.append(f"  {name:>10}: ECE {part['ece']} (noise floor {part['noise_floor']}); per class: {per_class}")
    for name, fit in result["fit"]["calibration"]["classes"].items():
        lines.append(f"  {name}: {fit.get('rule', 'fitted' if fit['fitted'] else 'raw')}: {fit['reason']}")
    lines.append(f"  target ECE <= {result['target_ece']}: {'met' if result['target_met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    from finetune.plots import plot_reliability

    args = parse_args(argv)
    result, before, after = measure(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stem = args.out.with_suffix("")
    result["files"] = {}
    for name, curves in (("before", before), ("after", after)):
        path = plot_reliability(curves, Path(f"{stem}_{name}.png"),
                                f"Held-out reliability, {'raw' if name == 'before' else 'calibrated'} scores")
        result["files"][name] = path.name
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
