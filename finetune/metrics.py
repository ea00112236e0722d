"""Scoring detections against ground truth, with no I/O: COCO mAP, per-class AP and PR data, confusion matrix,
false rejects, and the `EvalReport` that holds them.

- `score_predictions(ground_truth, predictions, ...)` -> `EvalReport` (the recalibration run reuses it on cached
  predictions),
- `class_pr_data(...)` -> per class, every prediction's score and whether it was a true positive at an IoU
  (what threshold fitting needs), and `ClassPR.curve()` for precision/recall at every score cut,
- `coco_metrics(...)`: mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP through faster-coco-eval,
- `confusion_matrix(...)` and `false_rejects(...)` at the operating thresholds,
- `EvalReport.reliability()`: how calibrated the box scores are (ECE, reliability bins; `finetune.reliability`).

Operating thresholds (`thresholds`): one float for every class or a per-class mapping (unlisted classes get
`DEFAULT_THRESHOLD`). mAP and PR data use every prediction whatever its score; the confusion matrix, the operating
point and false rejects (detections above threshold on frames whose ground truth has no boxes) use the thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.detections import Detections, box_iou
from agent.masks import encode_rle
from finetune.reliability import Reliability, calibration_json, class_reliability

DEFAULT_THRESHOLD = 0.5
BACKGROUND = "background"
Thresholds = float | Mapping[str, float] | None


class EvalError(ValueError):
    """Inputs that cannot be evaluated together; the message names the class, image or value at fault."""


# ----- per-class PR data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassPR:
    """Every prediction of one class over the data set, best score first, and whether it hit a ground-truth box."""

    name: str
    scores: npt.NDArray[np.float64]
    tp: npt.NDArray[np.bool_]
    n_gt: int

    def curve(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(precision, recall, score) after keeping the first 1, 2, ... predictions (i.e. score >= score[i])."""
        tp = np.cumsum(self.tp)
        fp = np.cumsum(~self.tp)
        precision = tp / np.maximum(tp + fp, 1)
        recall = tp / self.n_gt if self.n_gt else np.zeros_like(precision, dtype=np.float64)
        return precision.astype(np.float64), recall.astype(np.float64), self.scores

    def ap(self) -> float | None:
        """All-point interpolated AP at this IoU (None without ground truth): a cross-check on COCO's number."""
        if self.n_gt == 0:
            return None
        precision, recall, _ = self.curve()
        envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1]
        steps = np.diff(np.concatenate([[0.0], recall]))
        return float(np.sum(steps * envelope[:-1]))

    def at_threshold(self, threshold: float) -> dict[str, Any]:
        """Counts and precision/recall of the predictions scoring >= `threshold`."""
        kept = self.scores >= threshold
        tp, fp = int(self.tp[kept].sum()), int((~self.tp[kept]).sum())
        return {"threshold": threshold, "tp": tp, "fp": fp, "fn": self.n_gt - tp,
                "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / self.n_gt if self.n_gt else None}


def match_same_class(gt: Detections, pred: Detections, class_id: int, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """COCO-style greedy matching within one class: (scores, tp flags) of that class's predictions on one frame."""
    gt_boxes = gt.xyxy[gt.class_id == class_id]
    mine = pred.class_id == class_id
    scores = pred.score[mine].astype(np.float64)
    order = np.argsort(-scores, kind="stable")
    overlaps = box_iou(pred.xyxy[mine][order], gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    tp = np.zeros(len(order), dtype=bool)
    for row in range(len(order)):
        candidates = np.where(taken, -1.0, overlaps[row]) if len(gt_boxes) else np.zeros(0)
        if len(candidates) and candidates.max() >= iou:
            taken[int(candidates.argmax())] = True
            tp[row] = True
    return scores[order], tp


def class_pr_data(
    ground_truth: Sequence[Detections], predictions: Sequence[Detections], class_names: Sequence[str], iou: float = 0.5
) -> dict[str, ClassPR]:
    """Per class: every prediction's score (descending) and TP flag at `iou`, and the number of ground-truth boxes."""
    result = {}
    for class_id, name in enumerate(class_names):
        parts = [match_same_class(gt, pred, class_id, iou) for gt, pred in zip(ground_truth, predictions)]
        scores = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
        tp = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=bool)
        order = np.argsort(-scores, kind="stable")
        n_gt = int(sum((gt.class_id == class_id).sum() for gt in ground_truth))
        result[name] = ClassPR(name, scores[order], tp[order], n_gt)
    return result


# ----- COCO metrics --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CocoMetrics:
    map: float
    map50: float
    map75: float
    per_class: dict[str, float | None]  # AP@[.5:.95]; None for a class without ground-truth boxes
    per_class_ap50: dict[str, float | None]


def to_coco(
    ground_truth: Sequence[Detections], predictions: Sequence[Detections], class_names: Sequence[str],
    iou_type: str = "bbox",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ground truth as a COCO data set dict and predictions as a COCO results list (ids are 1-based); with
    `iou_type="segm"` every entry also carries its mask as RLE `segmentation` (areas are mask pixels)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for image_id, (gt, pred) in enumerate(zip(ground_truth, predictions), start=1):
        images.append({"id": image_id, "width": gt.image_size[0], "height": gt.image_size[1]})
        gt_masks = _segmentations(gt, iou_type)
        for i, box in enumerate(gt):
            xywh = _xywh(box.xyxy)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": box.class_id + 1,
                                "bbox": xywh, "area": xywh[2] * xywh[3], "iscrowd": 0, **gt_masks[i]})
        pred_masks = _segmentations(pred, iou_type)
        results.extend({"image_id": image_id, "category_id": box.class_id + 1, "bbox": _xywh(box.xyxy),
                        "score": box.score, **pred_masks[i]} for i, box in enumerate(pred))
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _segmentations(dets: Detections, iou_type: str) -> list[dict[str, Any]]:
    """Per box, the extra COCO fields of `iou_type`: nothing for bbox; RLE and mask area for segm."""
    if iou_type != "segm" or len(dets) == 0:
        return [{} for _ in range(len(dets))]
    if dets.mask is None:
        raise EvalError(f"segm metrics need instance masks on every frame; a frame of {len(dets)} box(es) has none")
    areas = dets.mask.sum(axis=(1, 2))
    return [{"segmentation": rle, "area": int(area)} for rle, area in zip(encode_rle(dets.mask), areas)]


def has_masks(frames: Sequence[Detections]) -> bool:
    """Every frame with boxes carries their instance masks, and some do (segm metrics are possible)."""
    return any(d.mask is not None for d in frames) and all(d.mask is not None or len(d) == 0 for d in frames)


def _xywh(xyxy: tuple[float, float, float, float]) -> list[float]:
    x1, y1, x2, y2 = xyxy
    return [x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0)]


def coco_metrics(
    ground_truth: Sequence[Detections], predictions: Sequence[Detections], class_names: Sequence[str],
    iou_type: str = "bbox",
) -> CocoMetrics:
    """mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP, computed by faster-coco-eval (all areas, 100 dets); by box
    overlap (`bbox`) or by mask overlap (`segm`, which needs masks on both sides)."""
    from faster_coco_eval import COCO, COCOeval_faster

    gt_dict, results = to_coco(ground_truth, predictions, class_names, iou_type)
    coco_gt = COCO(gt_dict)
    coco_eval = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iouType=iou_type, print_function=_silent)
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    precision = np.asarray(coco_eval.eval["precision"])[:, :, :, 0, -1]  # IoU x recall x class, area all, 100 dets
    per_class = {name: _mean_valid(precision[:, :, k]) for k, name in enumerate(class_names)}
    per_class_50 = {name: _mean_valid(precision[0, :, k]) for k, name in enumerate(class_names)}
    stats = [max(float(s), 0.0) for s in coco_eval.stats[:3]]  # COCO reports -1 when nothing has ground truth
    return CocoMetrics(stats[0], stats[1], stats[2], per_class, per_class_50)


def _mean_valid(values: npt.NDArray[np.float64]) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def _silent(*_args: object, **_kwargs: object) -> None:
    return None


# ----- thresholds, confusion matrix, false rejects ------------------------------------------------------------------
def resolve_thresholds(thresholds: Thresholds, class_names: Sequence[str]) -> dict[str, float]:
    """One threshold per class; an unknown class name or a value outside [0, 1] raises `EvalError`."""
    if thresholds is None or isinstance(thresholds, (int, float)):
        value = DEFAULT_THRESHOLD if thresholds is None else float(thresholds)
        resolved = {name: value for name in class_names}
    else:
        unknown = sorted(set(thresholds) - set(class_names))
        if unknown:
            raise EvalError(f"thresholds for unknown class(es) {unknown}; classes: {list(class_names)}")
        resolved = {name: float(thresholds.get(name, DEFAULT_THRESHOLD)) for name in class_names}
    bad = {name: value for name, value in resolved.items() if not 0.0 <= value <= 1.0}
    if bad:
        raise EvalError(f"thresholds must lie in [0, 1]; got {bad}")
    return resolved


@dataclass(frozen=True)
class FrameMatch:
    """One frame's kept predictions matched to ground truth, whatever the class (for the confusion matrix)."""

    pairs: list[tuple[int, int]]  # (gt class, predicted class)
    unmatched_pred: list[int]  # predicted classes of false positives
    unmatched_gt: list[int]  # classes of missed ground-truth boxes

    @property
    def errors(self) -> int:
        return len(self.unmatched_pred) + len(self.unmatched_gt) + sum(g != p for g, p in self.pairs)


def match_frame(gt: Detections, pred: Detections, iou: float) -> FrameMatch:
    """Greedy by score: same-class matches first, then a leftover prediction may match a box of another class."""
    order = np.argsort(-pred.score, kind="stable")
    overlaps = box_iou(pred.xyxy, gt.xyxy)
    gt_taken = np.zeros(len(gt), dtype=bool)
    pred_match = np.full(len(pred), -1)
    for same_class in (True, False):
        for p in order:
            if pred_match[p] >= 0:
                continue
            allowed = ~gt_taken & ((gt.class_id == pred.class_id[p]) if same_class else True)
            candidates = np.where(allowed, overlaps[p], -1.0)
            if len(candidates) and candidates.max() >= iou:
                pred_match[p] = int(candidates.argmax())
                gt_taken[pred_match[p]] = True
    pairs = [(int(gt.class_id[g]), int(pred.class_id[p])) for p, g in enumerate(pred_match) if g >= 0]
    return FrameMatch(pairs, [int(pred.class_id[p]) for p in np.where(pred_match < 0)[0]],
                      [int(gt.class_id[g]) for g in np.where(~gt_taken)[0]])


def confusion_matrix(matches: Sequence[FrameMatch], n_classes: int) -> npt.NDArray[np.int64]:
    """(K+1) x (K+1) counts: rows = ground truth, columns = prediction; index K is background (miss / false alarm)."""
    matrix = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    for match in matches:
        for gt_class, pred_class in match.pairs:
            matrix[gt_class, pred_class] += 1
        for pred_class in match.unmatched_pred:
            matrix[n_classes, pred_class] += 1
        for gt_class in match.unmatched_gt:
            matrix[gt_class, n_classes] += 1
    return matrix


def false_rejects(
    ground_truth: Sequence[Detections], kept: Sequence[Detections], names: Sequence[str]
) -> dict[str, Any]:
    """Known-good frames (no ground-truth boxes) that got at least one detection above threshold."""
    good = [i for i, gt in enumerate(ground_truth) if len(gt) == 0]
    rejected = [names[i] for i in good if len(kept[i]) > 0]
    return {"known_good_frames": len(good), "count": len(rejected),
            "rate": len(rejected) / len(good) if good else None, "frames": rejected}


# ----- the report ----------------------------------------------------------------------------------------------------
@dataclass
class EvalReport:
    """Everything an evaluation found; `to_json()` is what `metrics.json` holds."""

    coco: CocoMetrics
    pr: dict[str, ClassPR]
    thresholds: dict[str, float]
    iou: float
    confusion: npt.NDArray[np.int64]
    false_rejects: dict[str, Any]
    counts: dict[str, int]
    frame_errors: list[int]
    model: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    segm: CocoMetrics | None = None  # mask mAP, when ground truth and predictions both carry masks

    @property
    def class_names(self) -> list[str]:
        return list(self.pr)

    @property
    def map(self) -> float:
        return self.coco.map

    @property
    def map50(self) -> float:
        return self.coco.map50

    @property
    def per_class(self) -> dict[str, float | None]:
        return self.coco.per_class

    def reliability(self) -> dict[str, Reliability]:
        """Reliability bins and ECE of the box scores, per class and overall, from the same matches as the PR data."""
        return class_reliability(self.pr)

    def confusion_json(self) -> dict[str, Any]:
        return {"labels": [*self.class_names, BACKGROUND], "rows": "ground truth", "columns": "prediction",
                "iou": self.iou, "thresholds": self.thresholds, "matrix": self.confusion.tolist()}

    def to_json(self) -> dict[str, Any]:
        return {
            "map": self.coco.map, "map50": self.coco.map50, "map75": self.coco.map75,
            "per_class": self.coco.per_class, "per_class_ap50": self.coco.per_class_ap50,
            "operating_point": {name: pr.at_threshold(self.thresholds[name]) for name, pr in self.pr.items()},
            "false_rejects": self.false_rejects, "confusion_matrix": self.confusion_json(),
            "score_calibration": calibration_json(self.reliability()),
            "iou": self.iou, "thresholds": self.thresholds, "model": self.model, **self.counts, "files": self.files,
            **({} if self.segm is None else {"segm": {
                "map": self.segm.map, "map50": self.segm.map50, "map75": self.segm.map75,
                "per_class": self.segm.per_class, "per_class_ap50": self.segm.per_class_ap50}}),
        }


def score_predictions(
    ground_truth: Sequence[Detections],
    predictions: Sequence[Detections],
    class_names: Sequence[str],
    names: Sequence[str] | None = None,
    thresholds: Thresholds = None,
    iou: float = 0.5,
) -> EvalReport:
    """All metrics for aligned ground truth / predictions (same class list); `names` label frames in reports."""
    if len(ground_truth) != len(predictions):
        raise EvalError(f"{len(ground_truth)} ground-truth frames but {len(predictions)} prediction lists")
    if not ground_truth:
        raise EvalError("nothing to evaluate: the data set has no images")
    if not 0.0 < iou <= 1.0:
        raise EvalError(f"iou={iou}: must lie in (0, 1]")
    names = list(names) if names is not None else [str(i) for i in range(len(ground_truth))]
    resolved = resolve_thresholds(thresholds, class_names)
    kept = [pred.above(resolved) for pred in predictions]  # resolved lists every class: no default
    matches = [match_frame(gt, k, iou) for gt, k in zip(ground_truth, kept)]
    counts = {"images": len(ground_truth), "gt_boxes": sum(len(gt) for gt in ground_truth),
              "detections": sum(len(p) for p in predictions), "detections_above_threshold": sum(len(k) for k in kept)}
    return EvalReport(
        coco=coco_metrics(ground_truth, predictions, class_names),
        pr=class_pr_data(ground_truth, predictions, class_names, iou),
        thresholds=resolved, iou=iou, confusion=confusion_matrix(matches, len(class_names)),
        false_rejects=false_rejects(ground_truth, kept, names), counts=counts, frame_errors=[m.errors for m in matches],
        segm=(coco_metrics(ground_truth, predictions, class_names, "segm")
              if has_masks(ground_truth) and has_masks(predictions) else None),
    )


def pr_curves_json(pr: Mapping[str, ClassPR], iou: float) -> dict[str, Any]:
    """Per class: the precision/recall/score after each prediction (thinned to at most 200 points)."""
    curves = {}
    for name, data in pr.items():
        precision, recall, scores = data.curve()
        keep = np.unique(np.linspace(0, len(scores) - 1, min(len(scores), 200)).astype(np.int64))
        curves[name] = {"n_gt": data.n_gt, "ap": data.ap(), "precision": precision[keep].round(4).tolist(),
                        "recall": recall[keep].round(4).tolist(), "score": scores[keep].round(4).tolist()}
    return {"iou": iou, "classes": curves}
