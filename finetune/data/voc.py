"""Pascal VOC sets: `Annotations/**.xml` + `JPEGImages/**` (also `annotations/`, `images/`) + `classes.txt`.

Boxes are `<bndbox>` pixel corners, used as written (the 1-based VOC convention is not shifted, so a set reads
back exactly as it was drawn). Integers are written; reading accepts decimals. VOC has no class list of its own:
`classes.txt` beside the folders fixes the order, otherwise names are collected in first-seen order. An image
without an XML file is a defect-free frame, the same rule as YOLO.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

from finetune.data.dataset import Dataset, Progress, Sample, no_progress
from finetune.data.files import (
    IMAGE_SUFFIXES,
    copy_images,
    image_channels,
    prepare_output_dir,
    read_class_file,
    write_class_file,
)
from finetune.data.issues import IssueLog, Location
from finetune.data.validate import RawBox, RawSample, assemble, first_seen_classes

ANNOTATIONS_DIRS = ("Annotations", "annotations")
IMAGES_DIRS = ("JPEGImages", "images")
CLASS_FILE = "classes.txt"


def read_voc(
    src: Path,
    class_names: tuple[str, ...] | None = None,
    skip_invalid: bool = False,
    progress: Progress = no_progress,
) -> Dataset:
    """Read a VOC folder; problems are reported with the XML file and the line of the element."""
    annotations_dir, images_dir = _subdir(src, ANNOTATIONS_DIRS), _subdir(src, IMAGES_DIRS)
    if class_names is None and (src / CLASS_FILE).is_file():
        class_names = read_class_file(src / CLASS_FILE)
    log = IssueLog()
    raws = [_read_xml(path, annotations_dir, images_dir) for path in sorted(annotations_dir.rglob("*.xml"))]
    annotated = {raw.image.absolute() for raw in raws}
    for image in sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if image.absolute() not in annotated:
            raws.append(RawSample(image, Location(image)))
    names = class_names if class_names is not None else first_seen_classes(raws)
    samples = assemble(raws, names, log, progress)
    return Dataset(names, samples, root=images_dir, skipped=log.finish(skip_invalid))


def _subdir(src: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (src / name).is_dir():
            return src / name
    raise FileNotFoundError(f"no {' or '.join(names)} folder in the VOC set at {src}")


def parse_xml_with_lines(path: Path) -> tuple[ET.Element, dict[ET.Element, int]]:
    """The XML tree plus each element's 1-based line number (ElementTree alone does not keep them)."""
    parser = expat.ParserCreate()
    builder = ET.TreeBuilder()
    lines: dict[ET.Element, int] = {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        lines[builder.start(tag, attrs)] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.Parse(path.read_bytes(), True)
    return builder.close(), lines


def _read_xml(path: Path, annotations_dir: Path, images_dir: Path) -> RawSample:
    folder = images_dir / path.relative_to(annotations_dir).parent
    try:
        root, lines = parse_xml_with_lines(path)
    except expat.ExpatError as error:
        raw = RawSample(_image_for(folder, path.stem, None), Location(path))
        raw.problem(Location(path, error.lineno), f"malformed XML: {expat.errors.messages[error.code]}")
        return raw
    raw = RawSample(_image_for(folder, path.stem, root.findtext("filename")), Location(path, lines.get(root)))
    size = root.find("size")
    if size is not None:
        declared = _numbers(size, ("width", "height"))
        if declared is not None:
            raw.declared_size = (int(declared[0]), int(declared[1]))
    for element in root.iter("object"):
        location = Location(path, lines.get(element))
        _parse_object(element, location, raw)
    return raw


def _image_for(folder: Path, stem: str, filename: str | None) -> Path:
    if filename and filename.strip():
        return folder / filename.strip()
    found = [folder / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    return found[0] if found else folder / f"{stem}.jpg"


def _parse_object(element: ET.Element, location: Location, raw: RawSample) -> None:
    name = (element.findtext("name") or "").strip()
    box = element.find("bndbox")
    corners = _numbers(box, ("xmin", "ymin", "xmax", "ymax")) if box is not None else None
    if not name:
        raw.problem(location, "<object> has no <name>")
    elif corners is None:
        raw.problem(location, f"<object> {name!r} needs a <bndbox> with numeric xmin, ymin, xmax, ymax")
    else:
        raw.boxes.append(RawBox(name, (corners[0], corners[1], corners[2], corners[3]), location))


def _numbers(parent: ET.Element, tags: tuple[str, ...]) -> list[float] | None:
    try:
        return [float(parent.findtext(tag) or "") for tag in tags]
    except ValueError:
        return None


def write_voc(dataset: Dataset, dst: Path, overwrite: bool = False, progress: Progress = no_progress) -> Path:
    """Write `Annotations/` (one XML per image, objectless for defect-free frames), `JPEGImages/`, `classes.txt`."""
    prepare_output_dir(dst, overwrite)
    images_dir, annotations_dir = dst / IMAGES_DIRS[0], dst / ANNOTATIONS_DIRS[0]
    paths = copy_images(dataset, images_dir, progress)
    for sample, image in zip(dataset, paths, strict=True):
        xml_path = annotations_dir / image.relative_to(images_dir).with_suffix(".xml")
        xml_path.parent.mkdir(parents=True, exist_ok=True)
        tree = ET.ElementTree(_annotation_element(sample, image))
        ET.indent(tree)
        tree.write(xml_path, encoding="utf-8", xml_declaration=False)
    write_class_file(dst / CLASS_FILE, dataset.class_names)
    return annotations_dir


def _annotation_element(sample: Sample, image: Path) -> ET.Element:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = image.parent.name
    ET.SubElement(root, "filename").text = image.name
    size = ET.SubElement(root, "size")
    width, height = sample.image_size
    for tag, count in (("width", width), ("height", height), ("depth", image_channels(image))):
        ET.SubElement(size, tag).text = str(count)
    for box in sample.detections:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = box.label
        for tag, text in (("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
            ET.SubElement(obj, tag).text = text
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, corner in zip(("xmin", "ymin", "xmax", "ymax"), box.xyxy, strict=True):
            ET.SubElement(bndbox, tag).text = str(round(corner))
    return root
