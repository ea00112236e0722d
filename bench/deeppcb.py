"""A model on DeepPCB's test split, scored two ways: COCO mAP50 and DeepPCB's own protocol; templates as known-good.

DeepPCB (`$EDGE_INSPECT_SHARED/datasets/deeppcb`, default `../shared/datasets/deeppcb`; never copied into the repo)
has 1,000 trainval and 500 test image pairs: a 640 x 640 binarised `{ID}_test.jpg` with its defect boxes and the
defect-free template `{ID}_temp.jpg` of the same spot.

- **COCO mAP50**: faster-coco-eval on the 500 test images (`finetune.metrics.coco_metrics`).
- **DeepPCB's protocol** (upstream README): a detection hits when its IoU with a ground-truth box of the same class
  exceeds 0.33; mAP is the mean of the per-class all-point AP at that IoU, and the F-score is taken at an operating
  point. Ours: per class the threshold that maximises F1 on `--fit-images` trainval images (never on test), then
  precision, recall and F-score over all test boxes. Upstream reports 98.6 % mAP and 98.2 % F-score.
- **False rejects**: the 500 test templates have no defect; the share that gets any box above those thresholds.

    python -m bench.deeppcb --model DIR                              # the whole test split, 200 trainval to fit
    python -m bench.deeppcb --model DIR --test-images 50 --fit-images 50   # a quick look

Writes JSON (`--out`, default bench/results/deeppcb_<model>.json), the PR curves at IoU 0.33 and a few annotated
test frames (predictions in class colours, ground truth green) next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
DEEPPCB_IOU = 0.33
PUBLISHED = {"map": 0.986, "f_score": 0.982}  # upstream's template-based model
ANNOTATED = 6


def default_data() -> Path:
    return Path(os.environ.get("EDGE_INSPECT_SHARED", Path(__file__).parents[1].parent / "shared")) / \
        "datasets" / "deeppcb"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model directory (with classes.txt)")
    parser.add_argument("--data", type=Path, default=None, help="DeepPCB root (default: the shared data set)")
    parser.add_argument("--fit-images", type=int, default=200, help="trainval images the thresholds are fitted on")
    parser.add_argument("--test-images", type=int, default=0, help="first N test pairs only (0: all 500)")
    parser.add_argument("--backend", default="torch-eager")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.data = args.data or default_data()
    if not (args.data / "PCBData").is_dir():
        parser.error(f"--data {args.data}: no PCBData folder (set EDGE_INSPECT_SHARED or pass --data)")
    args.out = args.out or RESULTS / f"deeppcb_{args.model.name}.json"
    return args


def read_split(root: Path, split: str, templates: bool, limit: int) -> Any:
    """The split's samples (test images, then their templates when asked), the first `limit` pairs (0: all)."""
    from finetune.data.convert import ReadOptions, read_dataset
    from finetune.data.dataset import Dataset

    dataset = read_dataset("deeppcb", root, ReadOptions(split=split, include_templates=templates))
    defects = [s for s in dataset.samples if len(s.detections)]
    goods = [s for s in dataset.samples if not len(s.detections)] if templates else []
    if limit:
        defects, goods = defects[:limit], goods[:limit]
    return Dataset(dataset.class_names, defects + goods, dataset.root)


def detect_all(detector: Any, samples: Sequence[Any], batch: int, label: str) -> tuple[list[Any], float]:
    """Raw detections for every sample, and the mean milliseconds per frame; prints progress."""
    from agent.imageio import read_image

    found: list[Any] = []
    started = time.perf_counter()
    for start in range(0, len(samples), batch):
        found += detector.detect([read_image(s.image) for s in samples[start:start + batch]])
        done = len(found)
        eta = (time.perf_counter() - started) / done * (len(samples) - done)
        print(f"  {label}: {done}/{len(samples)} frames, ~{eta:.0f} s left", flush=True)
    return found, 1000 * (time.perf_counter() - started) / max(len(samples), 1)


def best_f1_thresholds(pr: dict[str, Any], fallback: float = 0.5) -> dict[str, float]:
    """Per class the score cut with the highest F1 (the lowest such cut on ties); `fallback` without data."""
    cuts = {}
    for name, data in pr.items():
        precision, recall, scores = data.curve()
        if data.n_gt == 0 or not len(scores):
            cuts[name] = fallback
            continue
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        # a cut must keep every prediction with the same score: only the last index of each score run counts
        last_of_run = np.append(scores[1:] != scores[:-1], True)
        best = int(np.flatnonzero(last_of_run)[np.argmax(f1[last_of_run])])
        cuts[name] = float(scores[best])
    return cuts


def operating_point(pr: dict[str, Any], thresholds: dict[str, float]) -> dict[str, Any]:
    """Precision, recall and F-score over every class's boxes at the thresholds, and per class."""
    per_class = {name: data.at_threshold(thresholds[name]) for name, data in pr.items()}
    tp = sum(p["tp"] for p in per_class.values())
    fp = sum(p["fp"] for p in per_class.values())
    fn = sum(p["fn"] for p in per_class.values())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4), "recall": round(recall, 4),
            "f_score": round(f_score, 4), "per_class": per_class}


def deeppcb_protocol(truth: Sequence[Any], predicted: Sequence[Any], classes: Sequence[str],
                     thresholds: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, PR data) at IoU > 0.33: per-class AP, their mean, and the F-score at the thresholds."""
    from finetune.metrics import class_pr_data

    pr = class_pr_data(truth, predicted, classes, iou=np.nextafter(DEEPPCB_IOU, 1.0))  # "> 0.33", not ">="
    ap = {name: data.ap() for name, data in pr.items()}
    valid = [v for v in ap.values() if v is not None]
    metrics = {"iou": f"> {DEEPPCB_IOU}", "map": round(float(np.mean(valid)), 4) if valid else None,
               "per_class_ap": {k: None if v is None else round(v, 4) for k, v in ap.items()},
               **operating_point(pr, thresholds)}
    return metrics, pr


def fit_operating_thresholds(args: argparse.Namespace, detector: Any, classes: Sequence[str]) -> dict[str, float]:
    """Best-F1 thresholds at the DeepPCB IoU on `--fit-images` trainval images spread evenly over the split."""
    from finetune.evaluate import align_ground_truth
    from finetune.metrics import class_pr_data

    trainval = read_split(args.data, "trainval", templates=False, limit=0)
    picks = np.linspace(0, len(trainval.samples) - 1, min(args.fit_images, len(trainval.samples))).round()
    samples = [trainval.samples[int(i)] for i in sorted(set(picks))]
    truth = align_ground_truth(type(trainval)(trainval.class_names, samples, trainval.root), classes)
    predicted, _ = detect_all(detector, samples, args.batch, "fitting thresholds (trainval)")
    return best_f1_thresholds(class_pr_data(truth, predicted, classes, iou=np.nextafter(DEEPPCB_IOU, 1.0)))


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], list[Any], list[Any], Any]:
    """The result JSON, the test PR data, and truth/predictions/data set of the test images (for the pictures)."""
    from agent.detector.factory import create_detector
    from agent.modeldir import read_class_names
    from finetune.evaluate import align_ground_truth
    from finetune.metrics import coco_metrics, false_rejects

    classes = read_class_names(args.model)
    detector = create_detector(args.backend, args.model, None, classes, device="cpu")
    thresholds = fit_operating_thresholds(args, detector, classes)
    test = read_split(args.data, "test", templates=True, limit=args.test_images)
    truth = align_ground_truth(test, classes)
    predicted, ms = detect_all(detector, test.samples, args.batch, "test images and templates")
    defect = [i for i, t in enumerate(truth) if len(t)]
    coco = coco_metrics([truth[i] for i in defect], [predicted[i] for i in defect], classes)
    protocol, pr = deeppcb_protocol([truth[i] for i in defect], [predicted[i] for i in defect], classes, thresholds)
    kept = [p.above(thresholds) for p in predicted]
    names = [test.relative_name(s).as_posix() for s in test.samples]
    rejects = false_rejects(truth, kept, names)
    result = {
        "model": str(args.model), "backend": args.backend, "classes": list(classes),
        "test_images": len(defect), "templates": rejects["known_good_frames"],
        "coco": {"map50": round(coco.map50, 4), "map": round(coco.map, 4),
                 "per_class_ap50": {k: None if v is None else round(v, 4) for k, v in coco.per_class_ap50.items()}},
        "deeppcb_protocol": protocol, "published": PUBLISHED,
        "thresholds": {"rule": f"best F1 at IoU > {DEEPPCB_IOU} on {args.fit_images} trainval images",
                       "values": {k: round(v, 4) for k, v in thresholds.items()}},
        "false_rejects": {k: rejects[k] for k in ("known_good_frames", "count", "rate")},
        "ms_per_frame": round(ms, 1), "machine": platform.node(), "cpu": platform.processor() or platform.machine(),
    }
    return result, pr, truth, predicted, test


def write_pictures(out: Path, pr: dict[str, Any], result: dict[str, Any], truth: list[Any], predicted: list[Any],
                   test: Any) -> dict[str, str]:
    """PR curves at the DeepPCB IoU and the first few test frames annotated (kept boxes against ground truth)."""
    import cv2

    from agent.imageio import read_image
    from finetune.plots import draw_comparison, plot_pr_curves

    stem = out.with_suffix("")
    files = {"pr_curves": plot_pr_curves(pr, result["deeppcb_protocol"]["per_class_ap"],
                                         Path(f"{stem}_pr.png"), iou=DEEPPCB_IOU).name}
    thresholds = result["thresholds"]["values"]
    tiles = [draw_comparison(read_image(test.samples[i].image), truth[i], predicted[i].above(thresholds))
             for i in range(min(ANNOTATED, len(truth))) if len(truth[i])]
    if tiles:
        sheet = np.concatenate([cv2.resize(t, (320, 320)) for t in tiles], axis=1)
        cv2.imwrite(f"{stem}_frames.jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
        files["frames"] = Path(f"{stem}_frames.jpg").name
    return files


def report(result: dict[str, Any]) -> str:
    protocol, coco, rejects = result["deeppcb_protocol"], result["coco"], result["false_rejects"]
    return "\n".join([
        f"{result['model']} on DeepPCB test ({result['test_images']} images, {result['templates']} templates), "
        f"{result['ms_per_frame']} ms/frame on {result['cpu']}",
        f"  COCO mAP50 {coco['map50']}  (mAP {coco['map']})",
        f"  DeepPCB protocol (IoU > 0.33): mAP {protocol['map']}, F-score {protocol['f_score']} "
        f"(P {protocol['precision']}, R {protocol['recall']}); published: mAP {PUBLISHED['map']}, "
        f"F-score {PUBLISHED['f_score']}",
        f"  false rejects on templates: {rejects['count']}/{rejects['known_good_frames']} ({rejects['rate']})",
    ])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    result, pr, truth, predicted, test = measure(args)
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result["files"] = write_pictures(args.out, pr, result, truth, predicted, test)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
