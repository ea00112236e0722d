"""Pascal VOC sets: `Annotations/**.xml` + `JPEGImages/**` (or `images/`) + `classes.txt`; folder names in any case.

Boxes are `<bndbox>` pixel corners, used as written (the 1-based VOC convention is not shifted, so a set reads
back exactly as it was drawn). Integers are written; reading accepts decimals. VOC has no class list of its own:
`--classes` or `classes.txt` beside the folders fixes the order; taking the labels as found must be asked for
(`discover_classes`). `ImageSets/` is not read: every XML and every image is.

An XML pairs with the image of the same relative path and stem (`Annotations/a/x.xml` - `JPEGImages/a/x.*`), else
with the only image of that stem anywhere under the images folder, else with the image its `<filename>` names.
A `<filename>` naming a different image than the pair is an error, and so is an image with two XMLs. An image
without an XML is an error unless `unlabelled_as_good` takes it as a defect-free frame (written as an XML without
`<object>`, so a set this module writes reads back without that option).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from xml.parsers import expat

from finetune.data.dataset import Dataset, Progress, Sample, no_progress
from finetune.data.files import (
    IMAGE_SUFFIXES,
    copy_images,
    find_subdir,
    image_channels,
    image_files,
    prepare_output_dir,
    write_class_file,
)
from finetune.data.issues import IssueKind, IssueLog, Location
from finetune.data.validate import RawBox, RawSample, build_dataset, resolve_classes

ANNOTATIONS_DIRS = ("Annotations",)
IMAGES_DIRS = ("JPEGImages", "images")
CLASS_FILE = "classes.txt"


def read_voc(
    src: Path,
    class_names: tuple[str, ...] | None = None,
    skip_invalid: bool = False,
    progress: Progress = no_progress,
    *,
    unlabelled_as_good: bool = False,
    discover_classes: bool = False,
) -> Dataset:
    """Read a VOC folder; problems are reported with the XML file and the line of the element."""
    annotations_dir = find_subdir(src, ANNOTATIONS_DIRS, "VOC set")
    images_dir = find_subdir(src, IMAGES_DIRS, "VOC set")
    images = _Images(images_dir)
    xmls = sorted(p for p in annotations_dir.rglob("*") if p.suffix.lower() == ".xml" and p.is_file())
    raws = [_read_xml(path, path.relative_to(annotations_dir), images) for path in xmls]
    raws += _unannotated(images, raws, annotations_dir, unlabelled_as_good)
    log = IssueLog()
    names, source = resolve_classes(class_names, src / CLASS_FILE, raws, discover_classes, log)
    return build_dataset(raws, names, log, skip_invalid, progress, root=images_dir, classes_from=source)


class _Images:
    """The images under the images folder, looked up the ways an XML can name one (case-insensitively)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_path: dict[str, list[Path]] = {}  # relative path without suffix
        self.by_stem: dict[str, list[Path]] = {}  # bare stem, anywhere
        self.by_name: dict[str, list[Path]] = {}  # file name, anywhere
        self.files = image_files(root)
        for image in self.files:
            relative = PurePosixPath(image.relative_to(root).as_posix())
            self.by_path.setdefault(str(relative.with_suffix("")).casefold(), []).append(image)
            self.by_stem.setdefault(image.stem.casefold(), []).append(image)
            self.by_name.setdefault(image.name.casefold(), []).append(image)

    def own(self, stem: PurePosixPath) -> list[Path]:
        """Images pairing with the XML at `stem` (relative, no suffix): same path, else same stem anywhere."""
        return self.by_path.get(str(stem).casefold()) or self.by_stem.get(stem.name.casefold(), [])

    def named(self, folder: PurePosixPath, name: str) -> list[Path]:
        """Images a `<filename>` names: in the XML's folder first, else anywhere; a name without suffix is a stem."""
        if PurePosixPath(name).suffix.lower() not in IMAGE_SUFFIXES:
            return self.own(folder / name)
        beside = self.root / folder / name
        return [beside] if beside.is_file() else self.by_name.get(name.casefold(), [])

    def shown(self, images: list[Path]) -> str:
        return ", ".join(f"{self.root.name}/{p.relative_to(self.root).as_posix()}" for p in images)


def _pair(stem: PurePosixPath, filename: str, images: _Images) -> tuple[Path | None, str | None]:
    """The XML's image and, when the pairing is doubtful, a problem saying why."""
    own, named = images.own(stem), images.named(stem.parent, filename) if filename else []
    if len(own) > 1:
        return own[0], f"several images match this XML: {images.shown(own)}; keep one"
    if own:
        if filename and ((named and own[0] not in named) or _stem_of(filename) != own[0].stem.casefold()):
            return own[0], (f"<filename> is {filename!r}, but this XML pairs with {images.shown(own)} (same name): "
                            "it describes another image")
        return own[0], None
    if len(named) > 1:
        return named[0], f"<filename> {filename!r} matches several images: {images.shown(named)}"
    return (named[0] if named else None), None


def _base_name(filename: str) -> str:
    """The file name alone: a `<filename>` holding a path (`C:\\data\\x.jpg`, `../x.jpg`) still names `x.jpg`."""
    return PurePosixPath(filename.strip().replace("\\", "/")).name


def _stem_of(filename: str) -> str:
    """`x.jpg` -> `x`; a name without an image suffix (`crazing_1`, as some tools write it) is its own stem."""
    name = PurePosixPath(filename)
    return (name.stem if name.suffix.lower() in IMAGE_SUFFIXES else name.name).casefold()


def _unannotated(images: _Images, raws: list[RawSample], annotations_dir: Path, as_good: bool) -> list[RawSample]:
    """Images no XML pairs with: defect-free frames if `as_good`, else each one a problem."""
    claimed = {raw.image.absolute() for raw in raws}
    extra = []
    for image in images.files:
        if image.absolute() in claimed:
            continue
        raw = RawSample(image, Location(image), unlabelled=as_good)
        if not as_good:
            expected = annotations_dir / image.relative_to(images.root).with_suffix(".xml")
            raw.problem(raw.location, f"no annotation file {expected}; pass --unlabelled-as-good if images without "
                        "one are defect-free, or write an XML without <object>", IssueKind.NO_ANNOTATION)
        extra.append(raw)
    return extra


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


def _read_xml(path: Path, relative: Path, images: _Images) -> RawSample:
    stem = PurePosixPath(relative.with_suffix("").as_posix())
    try:
        root, lines = parse_xml_with_lines(path)
    except expat.ExpatError as error:
        raw = RawSample(_image_path(stem, "", images)[0], Location(path))
        raw.problem(Location(path, error.lineno), f"malformed XML: {expat.errors.messages[error.code]}",
                    IssueKind.MALFORMED)
        return raw
    filename = _base_name(root.findtext("filename") or "")
    image, problem = _image_path(stem, filename, images)
    raw = RawSample(image, Location(path, lines.get(root)))
    if problem:
        raw.problem(raw.location, problem, IssueKind.PAIRING)
    size = root.find("size")
    if size is not None:
        declared = _numbers(size, ("width", "height"))
        if declared is not None and all(math.isfinite(v) for v in declared):
            raw.declared_size = (int(declared[0]), int(declared[1]))
    for element in root.iter("object"):
        _parse_object(element, Location(path, lines.get(element)), raw)
    return raw


def _image_path(stem: PurePosixPath, filename: str, images: _Images) -> tuple[Path, str | None]:
    """The paired image, or where it was expected (the check then reports it missing); and any pairing problem."""
    image, problem = _pair(stem, filename, images)
    if image is not None:
        return image, problem
    return images.root / stem.parent / (filename or f"{stem.name}.jpg"), problem


def _parse_object(element: ET.Element, location: Location, raw: RawSample) -> None:
    name = (element.findtext("name") or "").strip()
    box = element.find("bndbox")
    corners = _numbers(box, ("xmin", "ymin", "xmax", "ymax")) if box is not None else None
    if not name:
        raw.box_problem(location, "<object> has no <name>")
    elif corners is None:
        raw.box_problem(location, f"<object> {name!r} needs a <bndbox> with numeric xmin, ymin, xmax, ymax")
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
