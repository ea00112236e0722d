"""PNG mask sets (`--format masks`): `images/**`, `masks/**` (same relative path, `.png`) and `classes.txt`.

A mask image is single-channel, the size of its image, with 0 for background and k for class k (1-based, in
`classes.txt` order; a one-class set may use 0/255 as most binary masks do). Each 8-connected region of one value
is one defect instance: its mask, and its tight box. A mask whose size differs from its image's is an error naming
both; an image without a mask file is an error unless `unlabelled_as_good` takes it as defect-free.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from finetune.data.dataset import Dataset, Progress, no_progress
from finetune.data.files import ImageProblem, decode_image, find_subdir, image_files, read_class_file
from finetune.data.issues import IssueKind, IssueLog, Location
from finetune.data.masks import mask_image_instances
from finetune.data.validate import RawBox, RawSample, build_dataset

CLASS_FILE = "classes.txt"


def read_mask_pngs(
    src: Path, skip_invalid: bool = False, progress: Progress = no_progress, *, unlabelled_as_good: bool = False
) -> Dataset:
    """Read a PNG mask set; every bad mask is reported (`AnnotationError`) with its file."""
    if not (src / CLASS_FILE).is_file():
        raise FileNotFoundError(f"no class list for the mask set at {src}: expected {src / CLASS_FILE}")
    class_names = read_class_file(src / CLASS_FILE)
    images_dir = find_subdir(src, ("images",), "mask set")
    masks_dir = _masks_dir(src)
    raws = [_read_mask(image, masks_dir / image.relative_to(images_dir).with_suffix(".png"), class_names,
                       unlabelled_as_good) for image in progress(image_files(images_dir), "reading masks")]
    return build_dataset(raws, class_names, IssueLog(), skip_invalid, progress, root=images_dir)


def _masks_dir(src: Path) -> Path:
    try:
        return find_subdir(src, ("masks",), "mask set")
    except FileNotFoundError:
        return src / "masks"  # every image then lacks its mask, and says so


def _read_mask(image: Path, mask_file: Path, class_names: tuple[str, ...], as_good: bool) -> RawSample:
    raw = RawSample(image, Location(mask_file if mask_file.is_file() else image))
    if not mask_file.is_file():
        raw.without_annotation(mask_file, as_good, "mask file", "write an all-zero mask")
        return raw
    labels = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2:
        shape = None if labels is None else labels.shape
        raw.problem(raw.location, f"mask {mask_file} is not a single-channel image (decoded shape {shape})",
                    IssueKind.BAD_IMAGE)
        return raw
    if not _same_size(raw, image, mask_file, (labels.shape[1], labels.shape[0])):
        return raw
    try:
        names, boxes, masks = mask_image_instances(labels.astype(np.int64), class_names)
    except ValueError as exc:
        raw.problem(raw.location, f"mask {mask_file}: {exc}", IssueKind.UNKNOWN_CLASS)
        return raw
    for name, box, mask in zip(names, boxes, masks, strict=True):
        xyxy = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        raw.boxes.append(RawBox(name, xyxy, raw.location, segmentation=mask))
    return raw


def _same_size(raw: RawSample, image: Path, mask_file: Path, mask_size: tuple[int, int]) -> bool:
    """The mask must cover its image pixel for pixel; a mismatch is a problem naming both files and sizes."""
    try:
        image_size = decode_image(image)
    except ImageProblem:
        return False  # build_dataset reports the image itself
    if image_size == mask_size:
        return True
    raw.problem(raw.location, f"mask {mask_file} is {mask_size[0]}x{mask_size[1]} but its image {image} is "
                f"{image_size[0]}x{image_size[1]}", IssueKind.SIZE_MISMATCH)
    return False
