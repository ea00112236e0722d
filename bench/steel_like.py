"""A SYNTHETIC stand-in for a steel-surface defect set, and `model train` measured on it.

There is no real steel set on this machine (no internet). This generator imitates the *shape* of the NEU surface
defect set that issue 12 talks about: small grey 200x200 images of rolled steel, six texture-defect classes, one class
per image, 1-5 boxes each (a few thousand boxes in all), written as Pascal VOC with grey JPEGs. The defects are drawn
procedurally (crack networks, dark elongated inclusions, blotches, pit clusters, scale flakes, long scratches); they
are NOT real steel, and a number measured here says how the recipe copes with grey textures and six classes, not
what it reaches on NEU-DET.

    python -m bench.steel_like --make /tmp/steel --images 1800          # only write the data set
    python -m bench.steel_like --out /tmp/steel-run --steps 800 --threads 1   # write it, train, evaluate

The second form runs `model train`'s code (`train_on_dataset`) on 90 % of the images, measures mAP50 on the rest and
writes bench/results/model_train_steel_like.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
SIZE = 200
RESULTS = Path(__file__).parent / "results"
Canvas = npt.NDArray[np.float32]


def steel_background(rng: np.random.Generator) -> Canvas:
    """Rolled-steel grey: a base level, horizontal rolling streaks, low-frequency shading and sensor noise."""
    base = rng.uniform(90, 170)
    streaks = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, 1)).astype(np.float32), (1, 5), 0) * rng.uniform(3, 10)
    shade = cv2.resize(rng.normal(0, 1, (4, 4)).astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, rng.uniform(3, 8), (SIZE, SIZE)).astype(np.float32)
    return base + np.repeat(streaks, SIZE, axis=1) + shade * rng.uniform(4, 12) + noise


def blob_mask(rng: np.random.Generator, w: int, h: int, fill: float, blur: float) -> Canvas:
    """An irregular soft blob of about `fill` of a w x h box (thresholded smooth noise)."""
    field = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), blur)
    cut = np.quantile(field, 1.0 - fill)
    return np.asarray(cv2.GaussianBlur((field > cut).astype(np.float32), (0, 0), 1.0), dtype=np.float32)


def crazing(rng: np.random.Generator, w: int, h: int) -> Canvas:
    mask = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(8, 20))):
        points = np.cumsum(rng.normal(0, 4, (6, 2)), axis=0) + rng.uniform([0, 0], [w, h])
        cv2.polylines(mask, [points.astype(np.int32)], False, 0.6, 1)
    return mask


def inclusion(rng: np.random.Generator, w: int, h: int) -> Canvas:
    mask = np.zeros((h, w), np.float32)
    long_side, vertical = max(w, h), h >= w
    for t in np.linspace(0.1, 0.9, int(rng.integers(2, 5))):
        centre = (w // 2, int(t * h)) if vertical else (int(t * w), h // 2)
        axes = (max(1, w // 3), int(long_side * 0.12)) if vertical else (int(long_side * 0.12), max(1, h // 3))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    return np.asarray(cv2.GaussianBlur(mask, (0, 0), 1.0), dtype=np.float32)


def patches(rng: np.random.Generator, w: int, h: int) -> Canvas:
    return blob_mask(rng, w, h, fill=0.55, blur=max(w, h) / 8)


def pitted_surface(rng: np.random.Generator, w: int, h: int) -> Canvas:
    mask = np.zeros((h, w), np.float32)
    for _ in range(int(w * h / 60)):
        cv2.circle(mask, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, 3)), 1.0, -1)
    return mask


def rolled_in_scale(rng: np.random.Generator, w: int, h: int) -> Canvas:
    mask = np.zeros((h, w), np.float32)
    for _ in range(int(w * h / 150)):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        flake = (rng.normal(0, 3, (5, 2)) + np.asarray([x, y])).astype(np.int32)
        cv2.fillPoly(mask, [flake], float(rng.uniform(0.5, 1.0)))
    return mask


def scratches(rng: np.random.Generator, w: int, h: int) -> Canvas:
    mask = np.zeros((h, w), np.float32)
    bend = rng.normal(0, 0.05 * max(w, h))
    t = np.linspace(0, 1, 20)[:, None]
    points = np.hstack([t * (w - 1), t * (h - 1) + bend * np.sin(np.pi * t)]) if w >= h else \
        np.hstack([t * (w - 1) + bend * np.sin(np.pi * t), t * (h - 1)])
    cv2.polylines(mask, [points.astype(np.int32)], False, 1.0, int(rng.integers(1, 3)))
    return mask


# class -> (drawer, box width range, box height range, darkness range); scratches are bright or dark at random
DRAWERS: dict[str, tuple[Callable[[np.random.Generator, int, int], Canvas], tuple[int, int], tuple[int, int],
                         tuple[float, float]]] = {
    "crazing": (crazing, (40, 120), (40, 120), (25, 45)),
    "inclusion": (inclusion, (8, 24), (40, 120), (40, 80)),
    "patches": (patches, (40, 130), (40, 130), (35, 70)),
    "pitted_surface": (pitted_surface, (30, 90), (30, 90), (40, 80)),
    "rolled-in_scale": (rolled_in_scale, (40, 140), (30, 90), (25, 55)),
    "scratches": (scratches, (60, 190), (3, 20), (30, 60)),
}


def place(rng: np.random.Generator, name: str) -> tuple[Canvas, tuple[int, int, int, int]]:
    """One defect of class `name`: its alpha mask placed on the frame, and the tight box of what it changed."""
    drawer, ws, hs, _ = DRAWERS[name]
    w, h = int(rng.integers(*ws)), int(rng.integers(*hs))
    if rng.random() < 0.5 and name in ("inclusion", "scratches"):
        w, h = h, w  # vertical ones too
    w, h = min(w, SIZE - 2), min(h, SIZE - 2)
    x, y = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
    frame = np.zeros((SIZE, SIZE), np.float32)
    frame[y:y + h, x:x + w] = np.clip(drawer(rng, w, h), 0.0, 1.0)
    ys, xs = np.nonzero(frame > 0.2)
    if not len(xs):
        return frame, (x, y, x + w, y + h)
    return frame, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def steel_frame(seed: int, index: int) -> tuple[npt.NDArray[np.uint8], str, list[tuple[int, int, int, int]]]:
    """Image `index`: one class (round robin), 1-5 defects of it, as NEU-DET images have."""
    rng = np.random.default_rng([seed, index])
    name = CLASSES[index % len(CLASSES)]
    image = steel_background(rng)
    boxes = []
    for _ in range(int(rng.choice([1, 1, 2, 2, 3, 4, 5]))):
        alpha, box = place(rng, name)
        darkness = rng.uniform(*DRAWERS[name][3]) * (rng.choice([-1, 1]) if name == "scratches" else 1)
        image -= alpha * darkness
        boxes.append(box)
    return np.clip(image, 0, 255).astype(np.uint8), name, boxes


def write_steel_like(out: Path, images: int, seed: int = 0) -> Path:
    """Pascal VOC (`JPEGImages/*.jpg` grey, `Annotations/*.xml`, `classes.txt`) through the project's VOC writer."""
    from agent.detections import Detections
    from finetune.data import Dataset, Sample, write_dataset

    staging = out.with_name(out.name + ".images")
    staging.mkdir(parents=True, exist_ok=True)
    samples = []
    for index in range(images):
        image, name, boxes = steel_frame(seed, index)
        path = staging / f"{name}_{index:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        samples.append(Sample(path, Detections.from_labels([name] * len(boxes), boxes, CLASSES, (SIZE, SIZE))))
    write_dataset("voc", Dataset(CLASSES, samples), out, overwrite=True)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Write the set, train on 90 % of it with `model train`'s code, measure mAP50 on the rest."""
    import torch

    from finetune.data import read_dataset
    from finetune.tiny_train.dataset_frames import split_dataset
    from finetune.tiny_train.from_data import DataRecipe, train_on_dataset

    torch.set_num_threads(args.threads)
    data = write_steel_like(Path(args.out) / "data", args.images, args.seed)
    train_set, val_set = split_dataset(read_dataset("voc", data), 0.1, args.seed)
    recipe = DataRecipe(image_size=args.image_size, steps=args.steps, seed=args.seed, threads=args.threads)
    started = time.perf_counter()

    def report(step: int, total: int, values: dict[str, float]) -> None:
        if step % 25 == 0 or step == total:
            print(f"step {step}/{total} loss {values['loss']:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)

    summary = train_on_dataset(train_set, val_set, Path(args.out) / "model", recipe, report,
                               about={"data": str(data), "format": "voc"})
    return {"synthetic": True, "what": "SYNTHETIC steel-like stand-in (bench/steel_like.py), not NEU-DET",
            "images": args.images, "threads": args.threads, "machine": platform.machine(),
            "wall_seconds": round(time.perf_counter() - started, 1), **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make", type=Path, help="only write the data set (VOC) to this folder")
    parser.add_argument("--out", type=Path, help="work folder for the data set and the model")
    parser.add_argument("--images", type=int, default=1800)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.make:
        print(write_steel_like(args.make, args.images, args.seed))
        return
    if not args.out:
        parser.error("give --make DIR or --out DIR")
    result = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model_train_steel_like.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("history", "config")}, indent=2))


if __name__ == "__main__":
    main()
