"""Pure readers of annotated smear images: Pascal VOC XML, IML JSON and COCO JSON.

Every reader returns the same tables (see AnnotatedImages). Conventions:

- Boxes are (x, y, w, h) floats in the image's native pixels, (x, y) the top-left corner of
  the box, origin at the image's top-left pixel corner, so a box covers columns x .. x+w.
  VOC's 1-based inclusive corners are converted: x = xmin - 1, w = xmax - xmin + 1.
- ``obj`` is an object's 0-based position in its image's annotation (the order in the file),
  also for objects dropped on purpose, so ``image#obj`` names one object in messages.
- Image width and height come from the annotation (VOC ``<size>``, COCO ``images[]``) or,
  where the format has none (IML), from the image file (decoded with OpenCV, unrotated:
  EXIF orientation is not applied, as nowhere else in bloodcell).

Boxes overshooting the image: the real data were measured before choosing the tolerance.
BCCD (292 VOC files here) has no box outside its 640x480 images. IML (all 345 images) has
1250 boxes that end past the right or bottom edge, every one by exactly 1-5 px (the
annotation tool seems to pad boxes by 5 px). A box overshooting by at most
CLIP_TOLERANCE_PX or CLIP_TOLERANCE_FRACTION of the image side (whichever is larger: 8 px
for BCCD's 640x480 images, 12.8 px across and 9.6 px down IML's 1280x960 ones, about twice
the largest overshoot seen) is clipped to the image; a box further out is a UserError.
A box with no area after clipping (w or h <= 0; for VOC, xmax <= xmin or ymax <= ymin,
which BCCD has twice as a 1x1 px click) is dropped and listed in ``skipped``, as are
IML objects of type ``difficult``, VOC objects with ``<difficult>1`` and COCO crowd
regions (``iscrowd`` 1).

Which images: with ``names`` None, every annotated image whose file exists under the images
folder (IML's annotations.json annotates 345 images of which a copy may hold only some);
otherwise exactly the listed ones, and a listed name without annotation or image file is a
UserError naming the list (see read_name_list) and the fix.

Class names are kept as the dataset spells them; check_labels validates them against a
caller's class map.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from bloodcell.common.errors import UserError
from bloodcell.common.image_files import ImageProblem, check_size, header_size
from bloodcell.sources.layout import IMAGE_SUFFIXES

if TYPE_CHECKING:  # the type only: XML is parsed by defusedxml
    from xml.etree.ElementTree import Element

FORMATS = ("voc", "iml", "coco")
IMAGE_COLUMNS = ["image", "path", "width", "height"]
OBJECT_COLUMNS = ["image", "obj", "label", "x", "y", "w", "h"]
DROPPED_COLUMNS = ["image", "obj", "label", "reason"]
CLIP_TOLERANCE_PX = 8.0
CLIP_TOLERANCE_FRACTION = 0.01
IML_DIFFICULT = "difficult"

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class AnnotatedImages:
    """The images of an annotated set and their objects.

    images: image (str, file name relative to the images folder), path (str, absolute),
    width, height (int px); one row per image, sorted by image.
    objects: image, obj (int, 0-based order in its file), label (str, the dataset's class
    name), x, y, w, h (float px, top-left origin, clipped to the image); sorted by image, obj.
    skipped: (where, reason) for single objects dropped on purpose, where = ``image#obj``.
    dropped: the same objects as a table (image, obj, label, reason), for callers that count
    them per class.
    """

    images: pd.DataFrame
    objects: pd.DataFrame
    skipped: list[tuple[str, str]]
    dropped: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=DROPPED_COLUMNS))


class NameList(list):
    """A list of image names that remembers the file it was read from (``source``)."""

    def __init__(self, names: Iterable[str], source: Path | None = None) -> None:
        super().__init__(names)
        self.source = source


# ----------------------------------------------------------------------------- name lists

def read_name_list(path: Path) -> list[str]:
    """Image names or stems, one a line (VOC ImageSets/Main/*.txt style), in file order.

    Blank lines and lines starting with ``#`` are ignored; surrounding white space is
    stripped; repeated names are kept once. The result remembers ``path`` (a NameList), so a
    reader can name the list file when a listed image is missing.
    """
    if not path.is_file():
        raise UserError(f"{path}: image list not found; create it (one image name a line) or "
                        "pass the right path")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the image list ({err}); save it as UTF-8 "
                        "text, one image name a line") from None
    names = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
    if not names:
        raise UserError(f"{path}: the image list names no image; add one name a line")
    return NameList(dict.fromkeys(names), path)


def split_stem(name: str) -> str:
    """``name`` without its image suffix (``a.jpg`` -> ``a``); other names are kept whole."""
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else name


def list_origin(names: Sequence[str]) -> str:
    """How to name a list in a message: its file when known."""
    source = getattr(names, "source", None)
    return str(source) if source is not None else "the image list"


def missing_name(names: Sequence[str], name: str, what: str) -> UserError:
    """The error for a listed image that has no annotation or no image file."""
    return UserError(f"{list_origin(names)}: image {name!r} is listed but {what}; remove it "
                     "from the list or add the missing file")


def select(annotated: dict[str, Path | None], names: Sequence[str] | None, where: str,
           images_dir: Path) -> list[str]:
    """The annotated image names (file names) to read, sorted.

    ``annotated`` maps each annotated image's file name to its existing file (None when the
    file is absent). With ``names`` None: every annotated image that exists; otherwise each
    listed name (file name or stem), UserError for one without annotation or file.
    """
    if names is None:
        return sorted(n for n, p in annotated.items() if p is not None)
    by_stem: dict[str, list[str]] = {}
    for n in annotated:
        by_stem.setdefault(split_stem(n), []).append(n)
    chosen: list[str] = []
    for name in names:
        if name in annotated:
            found = name
        else:
            hits = by_stem.get(split_stem(name), [])
            if not hits:
                raise missing_name(names, name, f"has no annotation in {where}")
            if len(hits) > 1:
                raise UserError(f"{list_origin(names)}: image {name!r} matches "
                                f"{', '.join(sorted(hits))} in {where}; list the file name")
            found = hits[0]
        if annotated[found] is None:
            raise missing_name(names, name, f"its image {images_dir / found} does not exist")
        chosen.append(found)
    return sorted(set(chosen))


# ----------------------------------------------------------------------------- boxes

def number(value: object, where: str, key: str) -> float:
    """A finite float from a number or numeric string; UserError naming ``where`` otherwise."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{where}: {key} {value!r} is not a number; fix the annotation") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise UserError(f"{where}: {key} {value!r} is not a finite number; fix the annotation")
    return v


def tolerance(side: int) -> float:
    """How far (px) a box may overshoot an image side of ``side`` px and still be clipped."""
    return max(CLIP_TOLERANCE_PX, CLIP_TOLERANCE_FRACTION * side)


def clip_box(box: Box, width: int, height: int, where: str) -> Box:
    """Clip box (x, y, w, h) to a ``width`` x ``height`` image (px, top-left).

    UserError when the box overshoots an edge by more than the tolerance; the result may
    have w or h <= 0 (a zero-size box) for the caller to drop.
    """
    x, y, w, h = box
    over_x = max(-x, x + w - width, 0.0)
    over_y = max(-y, y + h - height, 0.0)
    if over_x > tolerance(width) or over_y > tolerance(height):
        raise UserError(f"{where}: box x={x:g} y={y:g} w={w:g} h={h:g} lies outside the "
                        f"{width}x{height} px image by {max(over_x, over_y):g} px (more than "
                        f"the {tolerance(width if over_x >= over_y else height):g} px "
                        "tolerance); fix the annotation")
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    return x0, y0, x1 - x0, y1 - y0


class Collector:
    """Accumulates image rows, object rows and dropped objects while a reader walks a file."""

    def __init__(self) -> None:
        self.images: list[tuple[str, str, int, int]] = []
        self.objects: list[tuple[str, int, str, float, float, float, float]] = []
        self.dropped: list[tuple[str, int, str, str]] = []

    def image(self, name: str, path: Path, width: int, height: int) -> None:
        self.images.append((name, str(path.resolve()), int(width), int(height)))

    def box(self, name: str, obj: int, label: str, box: Box, size: tuple[int, int],
            where: str) -> None:
        """Add one object's box (clipped); a box without area is dropped instead."""
        x, y, w, h = clip_box(box, size[0], size[1], where)
        if w <= 0 or h <= 0:
            self.drop(name, obj, label, f"zero-size box ({label}), ignored")
        else:
            self.objects.append((name, obj, label, x, y, w, h))

    def drop(self, name: str, obj: int, label: str, reason: str) -> None:
        self.dropped.append((name, obj, label, reason))

    def result(self) -> AnnotatedImages:
        images = pd.DataFrame(self.images, columns=IMAGE_COLUMNS)
        images = images.sort_values("image", kind="stable").reset_index(drop=True)
        objects = pd.DataFrame(self.objects, columns=OBJECT_COLUMNS)
        objects = objects.astype({"image": str, "obj": int, "label": str, "x": float,
                                  "y": float, "w": float, "h": float})
        objects = objects.sort_values(["image", "obj"], kind="stable").reset_index(drop=True)
        images = images.astype({"image": str, "path": str, "width": int, "height": int})
        dropped = pd.DataFrame(sorted(self.dropped), columns=DROPPED_COLUMNS)
        skipped = [(f"{n}#{i}", reason) for n, i, _, reason in sorted(self.dropped)]
        return AnnotatedImages(images, objects, skipped, dropped)


def image_file(images_dir: Path, name: str) -> Path | None:
    """images_dir/name if it is a file, else a file of the same stem with an image suffix."""
    path = images_dir / name
    if path.is_file():
        return path
    stem = split_stem(name)
    for suffix in IMAGE_SUFFIXES:
        for candidate in (images_dir / f"{stem}{suffix}", images_dir / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def exact_file(images_dir: Path, name: str) -> Path | None:
    """images_dir/name if it is a file (names from JSON files are taken as written)."""
    path = images_dir / name
    return path if path.is_file() else None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) in px of an image file, from its header where the format allows (PNG,
    BMP, JPEG), else decoded; UserError if it cannot be read or its size is unusable (see
    bloodcell.common.image_files.check_size)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read the image ({err.strerror})") from None
    size = header_size(data)
    if size is None:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
        if img is None:
            raise UserError(f"{path}: unreadable or truncated image; re-download or replace it")
        size = int(img.shape[1]), int(img.shape[0])
    try:
        check_size(size[::-1])
    except ImageProblem as err:
        raise UserError(f"{path}: {err}") from None
    return int(size[0]), int(size[1])


def require_folder(path: Path, what: str) -> None:
    if not path.is_dir():
        raise UserError(f"{path}: {what} folder not found; check the database layout "
                        "(see raw/README.md)")


def require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise UserError(f"{path}: {what} not found; check the database layout "
                        "(see raw/README.md)")


# ----------------------------------------------------------------------------- VOC

def voc_text(node: Element, key: str, where: str) -> str:
    """The stripped text of child ``key`` (a path like ``bndbox/xmin``); UserError if absent."""
    text = node.findtext(key)
    if text is None or not text.strip():
        raise UserError(f"{where}: <{key}> is missing or empty; fix the annotation")
    return text.strip()


def parse_voc(xml: Path) -> Element:
    """The root of a VOC annotation file; UserError for malformed or unsafe XML."""
    try:
        root = ElementTree.parse(xml).getroot()
    except ElementTree.ParseError as err:
        raise UserError(f"{xml}: malformed XML ({err}); fix or re-download the annotation"
                        ) from None
    except DefusedXmlException as err:
        raise UserError(f"{xml}: unsafe XML refused ({type(err).__name__}); use a plain VOC "
                        "annotation file") from None
    except OSError as err:
        raise UserError(f"{xml}: cannot read the annotation ({err.strerror})") from None
    if root.tag != "annotation":
        raise UserError(f"{xml}: root element is <{root.tag}>, not <annotation>; this is not "
                        "a Pascal VOC annotation")
    return root


def voc_size(root: Element, xml: Path, path: Path) -> tuple[int, int]:
    """(width, height) from ``<size>``; from the image file when the size is absent or 0."""
    w, h = root.findtext("size/width"), root.findtext("size/height")
    if w is None or h is None or not w.strip() or not h.strip():
        return image_size(path)
    width, height = number(w, str(xml), "<size><width>"), number(h, str(xml), "<size><height>")
    if width <= 0 or height <= 0:
        return image_size(path)
    return int(width), int(height)


def voc_object(col: Collector, name: str, i: int, obj: Element, size: tuple[int, int],
               xml: Path) -> None:
    """Add VOC object number ``i`` (0-based) of ``xml``."""
    where = f"{xml}: object #{i}"
    label = voc_text(obj, "name", where)
    if obj.find("bndbox") is None:
        raise UserError(f"{where} ({label}): <bndbox> is missing; fix the annotation")
    x0, y0, x1, y1 = (number(voc_text(obj, f"bndbox/{k}", where), f"{where} ({label})", k)
                      for k in ("xmin", "ymin", "xmax", "ymax"))
    if (obj.findtext("difficult") or "0").strip() == "1":
        col.drop(name, i, label, f"marked difficult ({label}), ignored")
    elif x1 <= x0 or y1 <= y0:
        col.drop(name, i, label, f"zero-size box ({label}: xmin {x0:g} xmax {x1:g}, "
                 f"ymin {y0:g} ymax {y1:g}), ignored")
    else:
        col.box(name, i, label, (x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1), size,
                f"{where} ({label})")


def read_voc(images_dir: Path, annotations_dir: Path,
             names: Sequence[str] | None) -> AnnotatedImages:
    """Read Pascal VOC XML files ``annotations_dir/<stem>.xml`` for images in ``images_dir``.

    The image is ``<filename>`` when that file exists, else ``<stem>.<image suffix>``.
    """
    require_folder(images_dir, "VOC images")
    require_folder(annotations_dir, "VOC annotations")
    xmls = {p.stem: p for p in sorted(annotations_dir.glob("*.xml"))}
    if names is not None:
        for name in names:
            if split_stem(name) not in xmls:
                raise missing_name(names, name, f"{annotations_dir / split_stem(name)}.xml "
                                   "does not exist")
        xmls = {split_stem(n): xmls[split_stem(n)] for n in names}
    col = Collector()
    found: dict[str, Path | None] = {}
    roots: dict[str, tuple[Path, Element]] = {}
    for stem, xml in xmls.items():
        root = parse_voc(xml)
        filename = (root.findtext("filename") or "").strip()
        path = image_file(images_dir, filename) if filename else None
        path = path or image_file(images_dir, stem)
        name = path.name if path is not None else (filename or f"{stem}.jpg")
        found[name] = path
        roots[name] = (xml, root)
    for name in select(found, names, str(annotations_dir), images_dir):
        xml, root = roots[name]
        path = found[name]
        assert path is not None
        size = voc_size(root, xml, path)
        col.image(name, path, *size)
        for i, obj in enumerate(root.findall("object")):
            voc_object(col, name, i, obj, size, xml)
    return col.result()


# ----------------------------------------------------------------------------- JSON

def load_json(path: Path, what: str) -> object:
    """Parsed JSON of ``path``; UserError for a missing, unreadable or malformed file."""
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: malformed JSON (line {err.lineno} column {err.colno}: "
                        f"{err.msg}); fix or re-download the {what}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); save the {what} as UTF-8 "
                        "JSON") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the {what} ({err.strerror})") from None


def need(entry: object, key: str, kind: type | tuple[type, ...], where: str) -> object:
    """entry[key] of the given JSON type; UserError naming ``where`` otherwise."""
    if not isinstance(entry, dict) or key not in entry:
        raise UserError(f"{where}: field {key!r} is missing; fix the annotation")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{where}: field {key!r} is {type(value).__name__}, not "
                        f"{getattr(kind, '__name__', 'the expected type')}; fix the annotation")
    return value


# ----------------------------------------------------------------------------- IML

def iml_entries(annotations_json: Path) -> dict[str, list]:
    """image_name -> objects list of an IML annotations.json; UserError for a bad structure."""
    data = load_json(annotations_json, "IML annotations")
    if not isinstance(data, list):
        raise UserError(f"{annotations_json}: expected a JSON array of {{image_name, objects}}; "
                        "this is not an IML annotations file")
    entries: dict[str, list] = {}
    for k, entry in enumerate(data):
        where = f"{annotations_json}: entry #{k}"
        name = str(need(entry, "image_name", str, where))
        objects = need(entry, "objects", list, f"{where} ({name})")
        if name in entries:
            raise UserError(f"{where}: image {name!r} is annotated twice; merge the entries")
        entries[name] = objects  # type: ignore[assignment]
    return entries


def iml_object(col: Collector, name: str, i: int, obj: object, size: tuple[int, int],
               annotations_json: Path) -> None:
    """Add IML object number ``i`` of image ``name``; values may be strings or numbers."""
    where = f"{annotations_json}: image {name} object #{i}"
    label = str(need(obj, "type", str, where))
    bbox = need(obj, "bbox", dict, f"{where} ({label})")
    x, y, w, h = (number(need(bbox, k, (str, int, float), f"{where} ({label}) bbox"),
                         f"{where} ({label})", k) for k in ("x", "y", "w", "h"))
    if label == IML_DIFFICULT:
        col.drop(name, i, label, "type 'difficult' (annotator unsure), ignored")
    elif w <= 0 or h <= 0:
        col.drop(name, i, label, f"zero-size box ({label}: w {w:g}, h {h:g}), ignored")
    else:
        col.box(name, i, label, (x, y, w, h), size, f"{where} ({label})")


def read_iml(images_dir: Path, annotations_json: Path,
             names: Sequence[str] | None) -> AnnotatedImages:
    """Read an IML annotations.json (array of {image_name, objects: [{type, bbox}]}).

    bbox x, y (top-left), w, h are in px (strings in the IML file). Width and height come
    from each image file.
    """
    require_folder(images_dir, "IML images")
    entries = iml_entries(annotations_json)
    found = {n: exact_file(images_dir, n) for n in entries}
    col = Collector()
    for name in select(found, names, str(annotations_json), images_dir):
        path = found[name]
        assert path is not None
        size = image_size(path)
        col.image(name, path, *size)
        for i, obj in enumerate(entries[name]):
            iml_object(col, name, i, obj, size, annotations_json)
    return col.result()


# ----------------------------------------------------------------------------- COCO

def coco_tables(coco_json: Path) -> tuple[dict[int, dict], dict[int, str], list[dict]]:
    """(images by id, category names by id, annotations) of a COCO file, checked."""
    data = load_json(coco_json, "COCO annotations")
    if not isinstance(data, dict):
        raise UserError(f"{coco_json}: expected a JSON object with images, annotations and "
                        "categories; this is not a COCO file")
    images: dict[int, dict] = {}
    for k, img in enumerate(need(data, "images", list, str(coco_json))):  # type: ignore[arg-type]
        where = f"{coco_json}: images[{k}]"
        image_id = int(need(img, "id", int, where))  # type: ignore[arg-type]
        need(img, "file_name", str, where)
        for key in ("width", "height"):
            if number(need(img, key, (int, float), where), where, key) <= 0:
                raise UserError(f"{where}: {key} must be positive; fix the annotation")
        if image_id in images:
            raise UserError(f"{where}: id {image_id} is already used by another image; give "
                            "each image its own id")
        if any(other["file_name"] == img["file_name"] for other in images.values()):
            raise UserError(f"{where}: file_name {img['file_name']} is listed twice; merge "
                            "the entries")
        images[image_id] = img
    cats: dict[int, str] = {}
    for k, cat in enumerate(need(data, "categories", list, str(coco_json))):  # type: ignore
        where = f"{coco_json}: categories[{k}]"
        cat_id = int(need(cat, "id", int, where))  # type: ignore[arg-type]
        if cat_id in cats:
            raise UserError(f"{where}: category id {cat_id} is listed twice; give each "
                            "category its own id")
        cats[cat_id] = str(need(cat, "name", str, where))  # type: ignore
    anns = need(data, "annotations", list, str(coco_json))
    return images, cats, anns  # type: ignore[return-value]


def read_coco(images_dir: Path, coco_json: Path,
              names: Sequence[str] | None) -> AnnotatedImages:
    """Read a COCO detection file: images[] (id, file_name, width, height), categories[]
    (id, name), annotations[] (image_id, category_id, bbox [x, y, w, h] top-left px).

    An image listed in images[] without annotations has no objects (a negative image).
    """
    require_folder(images_dir, "COCO images")
    images, cats, anns = coco_tables(coco_json)
    by_name = {str(img["file_name"]): image_id for image_id, img in images.items()}
    per_image: dict[int, list[tuple[int, dict]]] = {i: [] for i in images}
    for k, ann in enumerate(anns):
        where = f"{coco_json}: annotations[{k}]"
        image_id = int(need(ann, "image_id", int, where))  # type: ignore[arg-type]
        if image_id not in images:
            raise UserError(f"{where}: image_id {image_id} is not in images[]; fix the file")
        per_image[image_id].append((k, ann))
    found = {n: exact_file(images_dir, n) for n in by_name}
    col = Collector()
    for name in select(found, names, str(coco_json), images_dir):
        img = images[by_name[name]]
        path = found[name]
        assert path is not None
        size = (int(img["width"]), int(img["height"]))
        col.image(name, path, *size)
        for i, (k, ann) in enumerate(per_image[by_name[name]]):
            coco_object(col, name, i, ann, cats, size, f"{coco_json}: annotations[{k}]")
    return col.result()


def coco_object(col: Collector, name: str, i: int, ann: dict, cats: dict[int, str],
                size: tuple[int, int], where: str) -> None:
    """Add the ``i``-th annotation (0-based, file order) of image ``name``."""
    cat = int(need(ann, "category_id", int, where))  # type: ignore[arg-type]
    if cat not in cats:
        raise UserError(f"{where}: category_id {cat} is not in categories[]; fix the file")
    label = cats[cat]
    bbox = need(ann, "bbox", list, f"{where} ({label})")
    if len(bbox) != 4:  # type: ignore[arg-type]
        raise UserError(f"{where} ({label}): bbox must be [x, y, w, h]; fix the annotation")
    x, y, w, h = (number(v, f"{where} ({label})", k)
                  for v, k in zip(bbox, ("x", "y", "w", "h")))  # type: ignore[call-overload]
    if ann.get("iscrowd", 0) == 1:
        col.drop(name, i, label, f"crowd region ({label}), ignored")
    elif w <= 0 or h <= 0:
        col.drop(name, i, label, f"zero-size box ({label}: w {w:g}, h {h:g}), ignored")
    else:
        col.box(name, i, label, (x, y, w, h), size, f"{where} ({label})")


# ----------------------------------------------------------------------------- dispatch

def read_annotations(fmt: str, images_dir: Path, labels: Path,
                     names: Sequence[str] | None) -> AnnotatedImages:
    """Read ``labels`` (VOC annotations folder, IML or COCO JSON file) in format ``fmt``."""
    readers = {"voc": read_voc, "iml": read_iml, "coco": read_coco}
    if fmt not in readers:
        raise UserError(f"annotation format {fmt!r} is unknown; use one of "
                        f"{', '.join(FORMATS)}")
    return readers[fmt](images_dir, labels, names)


def check_labels(ann: AnnotatedImages, known: Collection[str], where: str) -> None:
    """UserError naming ``where`` (the annotation file), the image and object of the first
    label not in ``known``. Dropped objects are checked too, so ``known`` must hold the
    labels a reader drops by name (IML ``difficult``) when the caller accepts them."""
    rows = [*ann.objects[["image", "obj", "label"]].itertuples(index=False, name=None),
            *ann.dropped[["image", "obj", "label"]].itertuples(index=False, name=None)]
    for image, obj, label in sorted(rows):
        if label not in known:
            raise UserError(f"{where}: {image}#{obj}: class {label!r} is not one of "
                            f"{', '.join(sorted(known))}; fix the annotation or the class map")
