"""Class maps: how the detector's ten classes and a dataset's own labels meet for scoring.

A class map is declared data, a YAML file with three keys:

- ``classes``: the evaluation classes, in report order (at most ten; index k is class k);
- ``model``: each of the detector's ten classes (:data:`bloodcell.common.classes.CLASS_NAMES`,
  ``_`` = healthy RBC) -> an evaluation class, or ``null``: such detections are not scored;
- ``dataset``: each label of the dataset -> an evaluation class, or ``null``: such objects
  are *ignored regions* (like Pascal VOC's "difficult"): a detection lying on one (IoU >= 0.5)
  is neither a true nor a false positive;
- ``train`` (optional): each label of the dataset -> the detector's label when its images are
  cut into training tiles (real_tiles): a model class name, ``WBC`` (a white cell of unknown
  type: trains box and objectness, not the class) or ``null`` (left out).

Maps ship in ``bloodcell/sources/class_maps/NAME.yaml`` (``bccd``, ``iml``); ``--class-map`` takes a
NAME or the path of a YAML file. Every function here is pure except :func:`load_class_map`,
which reads the file. Boxes stay as they are (pixels, top-left x, y, w, h); only classes change.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from bloodcell.common.classes import CLASS_NAMES, LABEL_INDEX
from bloodcell.common.errors import UserError

MAX_CLASSES = len(CLASS_NAMES)
"""Evaluation classes are scored as class indices 0..K-1 by bloodcell.evaluate.metrics (K <= 10)."""


@dataclass(frozen=True)
class ClassMap:
    """A validated class map. ``model`` has exactly the ten model classes as keys; values of
    ``model`` and ``dataset`` are evaluation class names or None (not scored / ignored)."""

    name: str
    classes: tuple[str, ...]
    model: dict[str, str | None]
    dataset: dict[str, str | None]
    train: dict[str, str | None] | None = None

    def index(self, eval_class: str) -> int:
        """Index of an evaluation class (its class_idx in the scored tables)."""
        return self.classes.index(eval_class)


def bundled_names() -> list[str]:
    """Names of the class maps shipped with the package
    (``bloodcell/sources/class_maps/*.yaml``)."""
    folder = resources.files("bloodcell.sources") / "class_maps"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir()
                  if p.name.endswith(".yaml"))


def _read_text(spec: str) -> tuple[str, str]:
    """(text, where) of a class map given as a bundled NAME or a YAML path."""
    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file() or "/" in spec:
        if not path.is_file():
            raise UserError(f"class map {path}: no such file; give a YAML path or one of "
                            f"{', '.join(bundled_names())}")
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as err:
            raise UserError(f"class map {path}: not UTF-8 text (byte {err.start}); save it as "
                            "UTF-8") from None
    if spec not in bundled_names():
        raise UserError(f"unknown class map {spec!r}: use one of {', '.join(bundled_names())} "
                        "or the path of a YAML file (see bloodcell/sources/class_maps/)")
    res = resources.files("bloodcell.sources") / "class_maps" / f"{spec}.yaml"
    return res.read_text(encoding="utf-8"), f"class map {spec}"


def load_class_map(spec: str) -> ClassMap:
    """Read and validate a class map given as a bundled NAME (``bccd``) or a YAML path.

    Raises UserError (one line naming the map and the problem) for a missing file, bad YAML
    or a map that fails :func:`parse_class_map`.
    """
    text, where = _read_text(str(spec))
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{where}: not valid YAML ({first}); fix the file") from None
    name = Path(spec).stem if where != f"class map {spec}" else str(spec)
    return parse_class_map(doc, name, where)


def _mapping(doc: dict, key: str, allowed: set[str], where: str) -> dict[str, str | None]:
    """``doc[key]`` checked: string keys -> an allowed class or None."""
    value = doc.get(key)
    if not isinstance(value, dict) or not value:
        raise UserError(f"{where}: `{key}:` must map names to evaluation classes (or null)")
    out: dict[str, str | None] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise UserError(f"{where}: `{key}:` key {k!r} is not a string; quote it in the "
                            "YAML")
        if v is not None and (not isinstance(v, str) or v not in allowed):
            raise UserError(f"{where}: `{key}:` maps {k!r} to {v!r}, which is not in "
                            f"`classes:` {sorted(allowed)}; add it there or use null")
        out[k] = v
    return out


def parse_class_map(doc: object, name: str, where: str) -> ClassMap:
    """A ClassMap from a parsed YAML document, validated.

    Rules: ``classes`` is a list of 1..10 distinct non-empty strings; ``model`` maps every one
    of the ten model classes (no other key) to a class of ``classes`` or null; ``dataset``
    maps label strings to a class of ``classes`` or null; every evaluation class is the image
    of at least one model class (else it could never be detected). Raises UserError naming
    ``where`` and the offending key.
    """
    if not isinstance(doc, dict):
        raise UserError(f"{where}: expected a mapping with classes:, model: and dataset:")
    unknown = sorted(set(map(str, doc)) - {"classes", "model", "dataset", "train",
                                           "description"})
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; expected classes:, model:, "
                        "dataset:")
    classes = doc.get("classes")
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c for c in classes)):
        raise UserError(f"{where}: `classes:` must be a non-empty list of class names")
    if len(set(classes)) != len(classes):
        dup = next(c for c in classes if classes.count(c) > 1)
        raise UserError(f"{where}: `classes:` lists {dup!r} twice")
    if len(classes) > MAX_CLASSES:
        raise UserError(f"{where}: `classes:` has {len(classes)} classes, at most "
                        f"{MAX_CLASSES} are supported")
    allowed = set(classes)
    model = _mapping(doc, "model", allowed, where)
    missing = [c for c in CLASS_NAMES if c not in model]
    if missing:
        raise UserError(f"{where}: `model:` does not map model class {missing[0]!r}; map each "
                        f"of {', '.join(CLASS_NAMES)} (null to leave it unscored)")
    extra = [k for k in model if k not in CLASS_NAMES]
    if extra:
        raise UserError(f"{where}: `model:` names {extra[0]!r}, not a model class; the model "
                        f"classes are {', '.join(CLASS_NAMES)}")
    unreached = [c for c in classes if c not in model.values()]
    if unreached:
        raise UserError(f"{where}: no model class maps to evaluation class {unreached[0]!r}, "
                        "so it could never be detected; map one in `model:`")
    dataset = _mapping(doc, "dataset", allowed, where)
    train = _mapping(doc, "train", set(LABEL_INDEX), where) if "train" in doc else None
    return ClassMap(name, tuple(classes), {c: model[c] for c in CLASS_NAMES}, dataset, train)


def check_dataset_labels(cmap: ClassMap, ann, labels_where: str) -> None:
    """Raise UserError (one line naming ``labels_where``, the image and object) when an
    object of ``ann`` (a bloodcell.sources.annotations.AnnotatedImages, dropped objects
    included) has a label that is not a key of the map's ``dataset:``."""
    from bloodcell.sources.annotations import check_labels

    check_labels(ann, set(cmap.dataset), f"{labels_where} (class map {cmap.name})")


def _model_lookup(cmap: ClassMap) -> dict[int, int]:
    """Model class index -> evaluation class index, for the model classes that are scored."""
    return {i: cmap.index(cmap.model[n]) for i, n in enumerate(CLASS_NAMES)
            if cmap.model[n] is not None}


def model_groups(cmap: ClassMap) -> tuple[int, ...]:
    """The evaluation class index of each of the ten model classes (-1: not scored), for
    grouped scoring in bloodcell.model.decode."""
    lookup = _model_lookup(cmap)
    return tuple(lookup.get(i, -1) for i in range(len(CLASS_NAMES)))


def map_detections(det: pd.DataFrame, cmap: ClassMap) -> pd.DataFrame:
    """Detections with ``class_idx`` (model class 0..9) replaced by the evaluation class index;
    rows whose model class maps to null are dropped. Other columns are kept; index reset."""
    lookup = _model_lookup(cmap)
    keep = det[det["class_idx"].isin(list(lookup))]
    return keep.assign(class_idx=keep["class_idx"].map(lookup).astype(int)).reset_index(
        drop=True)


def map_objects(objects: pd.DataFrame, cmap: ClassMap) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scored, ignored) ground truth from annotation objects (columns image, label, x, y, w,
    h px top-left): scored rows get ``image_id`` = image and ``class_idx`` = evaluation class
    index; ignored rows (label mapped to null) keep image_id and the box. Labels must have
    passed :func:`check_dataset_labels`."""
    target = objects["label"].map(cmap.dataset)
    cols = ["image_id", "class_idx", "x", "y", "w", "h"]
    frame = objects.assign(image_id=objects["image"].astype(str))
    scored = frame[target.notna()]
    scored = scored.assign(class_idx=target[target.notna()].map(cmap.index).astype(int))
    ignored = frame[target.isna()].assign(class_idx=-1)
    return (scored[cols].reset_index(drop=True).astype({c: float for c in cols[2:]}),
            ignored[cols].reset_index(drop=True).astype({c: float for c in cols[2:]}))
