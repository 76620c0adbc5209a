"""A catalogue of bad inputs for every command (issue 13, part 4).

Each case is one (command, bad input) pair. A user error must give exit code 2 and exactly one
error line on stderr (``bloodcell: error: ...``, or argparse's ``bloodcell CMD: error: ...``)
that names the path (or option) and the fix, with no traceback, and leave no output folder,
no output file and no temporary ``.*.tmp-*`` folder behind, and every input as it was. Where a
command documents a skip instead (one bad image inside a database: the extractors list it in
``qc_skipped.csv``; ``evaluate-images`` lists it under ``skipped_images``), the case checks
that entry and exit code 0; images that ``detect`` documents as converted (grayscale, RGBA,
palette, 1-bit, 16-bit, float) must be accepted.

Every case works in a scratch folder whose name holds spaces and shell metacharacters, so
every path handed to a command has them. Commands that need a model run with a stand-in
detector unless the case is about the model file itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import PROJECT, make_iumc, make_kaggle, make_lisc, make_mamic, run_cli

SCRATCH = "in put;a&b$(c)|d #e"
"""Name of every case's scratch folder: spaces and shell metacharacters."""

ERROR_LINE = re.compile(r"^bloodcell(?: [\w-]+)*: error: ")
FIX = re.compile(r"\b(fix|check|use|run|pass|give|choose|add|remove|save|set|see|re-\w+|copy|"
                 r"delete|put|lay|point|move|create|install|export|crop|lower|raise|rename|"
                 r"name|merge|measure|train|open|free|wait|list|quote|map|tile|must|expected|"
                 r"only|needs?|one of|invalid choice|required|at most|at least)\b", re.I)
TQDM = re.compile(r"^\s*[\w-]+: +\d+%\|.*\| *\d+/\d+ \[")
"""A progress bar (tqdm) on stderr: drawn, not a message."""
NOISE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |To enable the following "
                   r"instructions|WARNING: All log messages before absl)")
"""Third-party log lines (TensorFlow's C++ log, absl) that a test process may already have
switched on before the CLI set its quiet levels; a command's own lines never match."""


# ----------------------------------------------------------------------------- bad images


def encode(ext: str, img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def huge_header_png(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG header claiming width x height 8-bit RGB pixels, without any pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def pil_png(img: np.ndarray, mode: str) -> bytes:
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(img[:, :, ::-1]))
    pil = pil.quantize(64) if mode == "P" else pil.convert("L").convert("1")
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def float_tiff(img: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(img[:, :, ::-1]).astype(np.float32) / 255,
                     photometric="rgb")
    return buf.getvalue()


def bad_image(kind: str, img: np.ndarray) -> bytes:
    """The bytes of a bad (or odd) variant of the BGR image ``img``."""
    if kind == "zero-byte":
        return b""
    if kind == "truncated":
        data = encode(".png", img)
        return data[: len(data) // 2]
    if kind == "truncated-jpeg":
        data = encode(".jpg", img)
        return data[: len(data) * 9 // 10]
    if kind == "not-an-image":
        return b"<html>this is not an image</html>\n"
    if kind == "grayscale":
        return encode(".png", cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    if kind == "rgba":
        return encode(".png", cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    if kind == "palette":
        return pil_png(img, "P")
    if kind == "1-bit":
        return pil_png(img, "1")
    if kind == "16-bit":
        return encode(".png", img.astype(np.uint16) * 257)
    if kind == "float":
        return float_tiff(img)
    if kind == "1x1":
        return encode(".png", np.ascontiguousarray(img[:1, :1]))
    if kind == "huge-header":
        return huge_header_png()
    raise AssertionError(kind)


IMAGE_KINDS = ("zero-byte", "truncated", "truncated-jpeg", "not-an-image", "grayscale", "rgba",
               "palette", "1-bit", "16-bit", "float", "1x1", "huge-header")
UNREADABLE = ("zero-byte", "truncated", "truncated-jpeg", "not-an-image", "1x1", "huge-header")
"""Kinds that no command can use (``detect`` converts the others)."""
REASON = {"zero-byte": "unreadable", "truncated": "truncated", "truncated-jpeg": "truncated",
          "not-an-image": "unreadable", "grayscale": "grayscale", "rgba": "RGBA",
          "1-bit": "grayscale", "16-bit": "16-bit", "float": "32-bit", "1x1": "too small",
          "huge-header": "too large"}
"""A word of the reason an extractor gives when it skips an image of that kind."""


def spoil(path: Path, kind: str) -> Path:
    """Replace the image at ``path`` by its ``kind`` variant (same name)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    path.write_bytes(bad_image(kind, img))
    return path


# ----------------------------------------------------------------------------- the catalogue


@dataclass
class Run:
    """One command line and what must come of it.

    expect: ``error`` (exit 2, one line holding every needle), ``skip`` (exit 0 and a
    qc_skipped.csv row: (folder, entry path, reason word)) or ``ok`` (exit 0, then ``check``).
    outputs: what must not exist after an error; made: whole outputs an error may leave
    (detect over a folder keeps the images it finished and a summary with a failed row),
    left out of the "inputs unchanged" snapshot; ``check`` runs after an error too.
    """

    args: list
    expect: str = "error"
    needles: tuple = ()
    outputs: tuple = ()
    skipped: tuple | None = None
    check: Callable[[], None] | None = None
    made: tuple = ()


@dataclass
class Ctx:
    world: World
    dir: Path
    monkeypatch: pytest.MonkeyPatch

    def out(self, name: str = "out put") -> Path:
        return self.dir / name


@dataclass(frozen=True)
class Case:
    command: str
    name: str
    build: Callable[[Ctx], Run]
    fake_model: bool = field(default=False)

    @property
    def id(self) -> str:
        return f"{self.command}:{self.name}"


CASES: list[Case] = []


def case(command: str, name: str, fake_model: bool = False):
    def register(fn: Callable[[Ctx], Run]) -> Callable[[Ctx], Run]:
        CASES.append(Case(command, name, fn, fake_model))
        return fn

    return register


def add(command: str, name: str, build: Callable[[Ctx], Run], fake_model: bool = False) -> None:
    CASES.append(Case(command, name, build, fake_model))


# ----------------------------------------------------------------------------- shared inputs


def write_smear_voc(root: Path, n: int = 2) -> tuple[Path, Path]:
    """root/JPEGImages/img_K.png (300x260 smears, RBC discs and a WBC) and root/Annotations."""
    images, labels = root / "JPEGImages", root / "Annotations"
    images.mkdir(parents=True)
    labels.mkdir()
    for i in range(n):
        img = np.full((260, 300, 3), (215, 220, 235), np.uint8)
        objects = []
        for k in range(4):
            cx, cy = 30 + 60 * k, 40
            cv2.circle(img, (cx, cy), 17, (150, 120, 200), -1)
            objects.append(("RBC", cx - 17, cy - 17, 35, 35))
        cv2.circle(img, (150, 170), 30, (140, 60, 110), -1)
        objects.append(("WBC", 120, 140, 61, 61))
        assert cv2.imwrite(str(images / f"img_{i}.png"), img)
        objs = "".join(
            f"<object><name>{lab}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin>"
            f"<ymin>{y + 1}</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
            for lab, x, y, w, h in objects)
        (labels / f"img_{i}.xml").write_text(
            f"<annotation><filename>img_{i}.png</filename><size><width>300</width><height>260"
            f"</height><depth>3</depth></size>{objs}</annotation>")
    return images, labels


def smear_coco(images: Path, labels: Path, out: Path) -> Path:
    """The VOC set at images/labels as one COCO file."""
    from bloodcell.sources.annotations import read_voc

    ann = read_voc(images, labels, None)
    names = {"RBC": 1, "WBC": 2, "Platelets": 3}
    doc = {"images": [{"id": k + 1, "file_name": r.image, "width": int(r.width),
                       "height": int(r.height)} for k, r in enumerate(ann.images.itertuples())],
           "categories": [{"id": v, "name": k} for k, v in names.items()],
           "annotations": []}
    ids = {d["file_name"]: d["id"] for d in doc["images"]}
    for r in ann.objects.itertuples():
        doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": ids[r.image],
                                   "category_id": names[r.label],
                                   "bbox": [r.x, r.y, r.w, r.h], "iscrowd": 0})
    out.write_text(json.dumps(doc))
    return out


def smear_iml(images: Path, labels: Path, out: Path) -> Path:
    """The VOC set at images/labels as an IML annotations.json (string values)."""
    from bloodcell.sources.annotations import read_voc

    ann = read_voc(images, labels, None)
    kinds = {"RBC": "red blood cell", "WBC": "ring"}
    entries = [{"image_name": name, "objects": [
        {"type": kinds[o.label], "bbox": {"x": str(o.x), "y": str(o.y), "w": str(o.w),
                                          "h": str(o.h)}}
        for o in ann.objects[ann.objects["image"] == name].itertuples()]}
        for name in ann.images["image"]]
    out.write_text(json.dumps(entries))
    return out


class World:
    """Valid inputs of every stage, built once per module on first use (read only to cases)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def cli(self, *args) -> None:
        from bloodcell.cli import main

        assert main(["-q", *map(str, args)]) == 0, args

    @cached_property
    def extract(self) -> Path:
        make_kaggle(self.root / "kaggle")
        self.cli("extract-kaggle", self.root / "kaggle", self.root / "ex/kaggle", "--scale",
                 "0.3")
        return self.root / "ex/kaggle"

    @cached_property
    def split_csv(self) -> Path:
        self.cli("split", self.extract, "--out", self.root / "split", "--seed", "1", "--train",
                 "0.34", "--valid", "0.33", "--test", "0.33")
        return self.root / "split" / "split.csv"

    def backgrounds(self, split: str) -> Path:
        out = self.root / "bg" / split
        if not out.is_dir():
            self.cli("backgrounds", split, "--split-table", self.split_csv, "--extracts",
                     self.extract, "--out", out, "--seed", "1", "--per-kind", "1", "--size",
                     "300", "--rbc-count", "5", "10")
        return out

    @cached_property
    def synth(self) -> Path:
        for split in ("train", "valid", "test"):
            self.cli("synth", f"{split}-0", "--split-table", self.split_csv, "--extracts",
                     self.extract, "--backgrounds", self.backgrounds(split), "--out",
                     self.root / "synth" / f"{split}-0", "--seed", "1", "--images", "2",
                     "--mix", "1", "0", "0", "0", "--bg-size", "300")
        return self.root / "synth"

    @cached_property
    def detector(self) -> Path:
        from bloodcell.model import network as model
        path = self.root / "models" / "detector.keras"
        path.parent.mkdir(exist_ok=True)
        model.detector().save(path)
        return path

    @cached_property
    def classifier(self) -> Path:
        from bloodcell.model import network as model
        path = self.root / "models" / "classifier.keras"
        path.parent.mkdir(exist_ok=True)
        model.classifier().save(path)
        return path

    @cached_property
    def not_a_zip(self) -> Path:
        path = self.root / "models" / "not-a-zip.keras"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"this is a text file named .keras\n")
        return path

    @cached_property
    def zip_not_model(self) -> Path:
        path = self.root / "models" / "zip-not-model.keras"
        path.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "a zip file, but not a Keras model\n")
        return path

    @cached_property
    def histories(self) -> tuple[Path, Path]:
        paths = (self.root / "plots" / "c.csv", self.root / "plots" / "d.csv")
        paths[0].parent.mkdir(exist_ok=True)
        for p in paths:
            p.write_text("epoch,loss,val_loss\n1,1.0,1.0\n")
        return paths

    @cached_property
    def slides(self) -> Path:
        """A slides folder: one 300x300 PNG and its COCO ground truth."""
        folder = self.root / "slides"
        (folder / "images").mkdir(parents=True)
        cv2.imwrite(str(folder / "images" / "slide_000.png"),
                    np.full((300, 300, 3), 220, np.uint8))
        (folder / "ground_truth.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "images/slide_000.png", "width": 300,
                        "height": 300}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 10,
                             "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}],
            "categories": [{"id": i + 1, "name": str(i)} for i in range(10)]}))
        return folder


# ----------------------------------------------------------------------------- CASES


def has_sample(out: Path, prefix: str) -> Callable[[], None]:
    def check() -> None:
        from bloodcell.dataset.samples import read_pack

        ids = read_pack(out / "samples.parquet", ["sample_id"]).column("sample_id").to_pylist()
        assert any(i.startswith(prefix) for i in ids), (prefix, ids)

    return check


def add_mamic_field(root: Path, crops: Path) -> None:
    """A second field image, field_002.png, and crop rows for it."""
    shutil.copy(root / "images" / "field_001.png", root / "images" / "field_002.png")
    rows = crops.read_text().splitlines()
    crops.write_text("\n".join(rows + [r.replace("field_001", "field_002")
                                       for r in rows[1:]]) + "\n")


@dataclass(frozen=True)
class Db:
    """How to make one extractor's database in a scratch folder and name its parts."""

    make: Callable[[Path], tuple[Path, list]]
    """scratch -> (ROOT, the arguments after ROOT and OUTDIR, with {out} for OUTDIR)."""
    image: str
    """Path, relative to ROOT, of the image the image cases spoil."""
    entry: str
    """Its qc_skipped.csv path."""
    sample: str
    """Prefix of its sample ids."""


def _kaggle(d: Path) -> tuple[Path, list]:
    return make_kaggle(d / "kaggle"), ["--scale", "0.3"]


def _lisc(d: Path) -> tuple[Path, list]:
    return make_lisc(d / "lisc", per_class=1), ["--scale", "0.5"]


def _iumc(d: Path) -> tuple[Path, list]:
    return make_iumc(d / "iumc", per_class=1), ["--scale", "0.5"]


def _mamic(d: Path) -> tuple[Path, list]:
    root, crops = make_mamic(d / "mamic")
    add_mamic_field(root, crops)
    return root, [crops, "--scale", "1"]


def _wbcseg(d: Path) -> tuple[Path, list]:
    from test_real_sources import make_wbcseg

    return make_wbcseg(d / "wbcseg"), ["--dataset", "1", "--scale-1", "1"]


def _voc(d: Path) -> tuple[Path, list]:
    from test_real_sources import make_voc

    return make_voc(d / "voc"), ["--image-set", "train", "--scale", "0.5"]


def _iml(d: Path) -> tuple[Path, list]:
    from test_real_sources import make_iml

    root = make_iml(d / "iml")
    (d / "iml list.txt").write_text("PA1.JPG\nPA2.JPG\n")
    return root, ["--images-list", d / "iml list.txt", "--scale", "0.5"]


DBS = {
    "extract-kaggle": Db(_kaggle, "cell_images/Parasitized/C1P1ThinF_IMG_1_cell_0.png",
                         "cell_images/Parasitized/C1P1ThinF_IMG_1_cell_0.png",
                         "kaggle/cell_images/Parasitized/C1P1ThinF_IMG_1_cell_0.png"),
    "extract-lisc": Db(_lisc, "LISC Database/Main Dataset/neut/1.bmp",
                       "LISC Database/Main Dataset/neut/1.bmp",
                       "lisc/LISC Database/Main Dataset/neut/1.bmp"),
    "extract-iumc": Db(_iumc, "Neutrophil/images/001.bmp", "Neutrophil/images/001.bmp",
                       "iumc/Neutrophil/images/001.bmp"),
    "extract-mamic": Db(_mamic, "images/field_002.png", "images/field_002.png",
                        "mamic/images/field_002.png@"),
    "extract-wbcseg": Db(_wbcseg, "Dataset 1/001.bmp", "Dataset 1/001.bmp",
                         "wbcseg/Dataset 1/001.bmp"),
    "extract-voc": Db(_voc, "BCCD/JPEGImages/img_1.png", "BCCD/JPEGImages/img_1.png#0",
                      "voc/BCCD/JPEGImages/img_1.png@"),
    "extract-iml": Db(_iml, "IML_Malaria/PA1.JPG", "IML_Malaria/PA1.JPG#0",
                      "iml/IML_Malaria/PA1.JPG@"),
}
IML_SIZE_ERRORS = {"zero-byte": "unreadable", "not-an-image": "unreadable",
                   "huge-header": "too large", "1x1": "too small"}
"""IML takes each image's size from the image file when it reads the annotations, so an
image whose size cannot be read stops the run (the other kinds are skipped later)."""


def extract_args(command: str, ctx: Ctx, root: Path | None = None) -> tuple[list, Path]:
    """(arguments of a good run of ``command`` on a fresh database, OUTDIR)."""
    made, rest = DBS[command].make(ctx.dir)
    out = ctx.out()
    positional = [root or made, *rest[:1], out] if command == "extract-mamic" else \
        [root or made, out]
    rest = rest[1:] if command == "extract-mamic" else rest
    return [command, *positional, *rest], out


def extract_image_case(command: str, kind: str) -> Callable[[Ctx], Run]:
    def build(ctx: Ctx) -> Run:
        db = DBS[command]
        args, out = extract_args(command, ctx)
        root = Path(args[1])
        spoil(root / db.image, kind)
        if kind == "palette":
            return Run(args, "ok", check=has_sample(out, db.sample))
        if command == "extract-iml" and kind in IML_SIZE_ERRORS:
            return Run(args, needles=(root / db.image, IML_SIZE_ERRORS[kind]), outputs=(out,))
        return Run(args, "skip", skipped=(out, db.entry, REASON[kind]))

    return build


for _command in DBS:
    for _kind in IMAGE_KINDS:
        add(_command, f"image-{_kind}", extract_image_case(_command, _kind))


def extract_case(command: str, name: str, needles: Callable[[Path, Ctx], tuple],
                 spoil_db: Callable[[Path, Ctx], Path | None] = lambda root, ctx: None,
                 expect: str = "error", extra: tuple = ()) -> None:
    """A case of ``command`` on a fresh database changed by ``spoil_db(ROOT, ctx)``, which
    may return another ROOT to pass; ``needles(ROOT, ctx)`` are the words of the error."""

    def build(ctx: Ctx) -> Run:
        args, out = extract_args(command, ctx)
        root = Path(args[1])
        other = spoil_db(root, ctx)
        if isinstance(other, Path):
            args[1] = other
        return Run([*args, *extra], expect, needles=needles(root, ctx),
                   outputs=() if out.exists() else (out,))

    add(command, name, build)


def mask_cases(command: str, mask: str) -> None:
    """Mask problems of an extractor with masks: each skips its image."""
    db = DBS[command]

    def case_of(name: str, change: Callable[[Path], None], word: str) -> None:
        def build(ctx: Ctx) -> Run:
            args, out = extract_args(command, ctx)
            change(Path(args[1]) / mask)
            return Run(args, "skip", skipped=(out, db.entry, word))

        add(command, name, build)

    case_of("mask-missing", lambda p: p.unlink(), "mask")
    case_of("mask-zero-byte", lambda p: p.write_bytes(b""), "mask")
    case_of("mask-truncated", lambda p: p.write_bytes(p.read_bytes()[:60]), "mask")
    case_of("mask-wrong-size", lambda p: cv2.imwrite(str(p), np.full((50, 70), 255, np.uint8)),
            "mask is 70x50")


mask_cases("extract-lisc", "LISC Database/Ground Truth Segmentation/neut/areaforexpert1/"
           "1_expert.bmp")
mask_cases("extract-iumc", "Neutrophil/masks/001.png")
mask_cases("extract-wbcseg", "Dataset 1/001.png")


def _too_deep(root: Path, ctx: Ctx) -> Path:
    deeper = ctx.dir / "outer"
    deeper.mkdir()
    shutil.move(str(root), str(deeper / root.name))
    return deeper


def _is_file(root: Path, ctx: Ctx) -> Path:
    (ctx.dir / "db.zip").write_bytes(b"PK\x03\x04 not unpacked")
    return ctx.dir / "db.zip"


def _all_bad(folder: str) -> Callable[[Path, Ctx], None]:
    def change(root: Path, ctx: Ctx) -> None:
        for p in (root / folder).rglob("*.png"):
            p.write_bytes(b"")

    return change


for _command in DBS:
    extract_case(_command, "root-missing", lambda r, c: (c.dir / "nowhere", "not found"),
                 lambda r, c: c.dir / "nowhere")
    extract_case(_command, "root-is-a-file", lambda r, c: (c.dir / "db.zip",), _is_file)

extract_case("extract-kaggle", "unpacked-too-deep",
             lambda r, c: ("one level too deep", c.dir / "outer"), _too_deep)
extract_case("extract-kaggle", "root-inside-the-database",
             lambda r, c: ("looks like the inside", "parent folder"),
             lambda r, c: r / "cell_images")
extract_case("extract-kaggle", "empty-class-folder",
             lambda r, c: (r / "cell_images" / "Uninfected", "empty class folder"),
             lambda r, c: [p.unlink() for p in (r / "cell_images/Uninfected").iterdir()] and None)
extract_case("extract-kaggle", "every-image-unreadable",
             lambda r, c: ("no sample could be extracted", "cell_images/"), _all_bad("."))
extract_case("extract-kaggle", "scale-zero", lambda r, c: ("--scale", "> 0"),
             extra=("--scale", "0"))
extract_case("extract-kaggle", "scale-inf", lambda r, c: ("--scale", "inf"),
             extra=("--scale", "inf"))
extract_case("extract-kaggle", "scale-nan", lambda r, c: ("--scale", "nan"),
             extra=("--scale", "nan"))
extract_case("extract-kaggle", "scale-text", lambda r, c: ("--scale", "'x'"),
             extra=("--scale", "x"))
extract_case("extract-kaggle", "threshold-999", lambda r, c: ("--threshold", "999"),
             extra=("--threshold", "999"))
extract_case("extract-kaggle", "pad-negative", lambda r, c: ("--pad", "-1"),
             extra=("--pad", "-1"))
extract_case("extract-kaggle", "out-is-a-file", lambda r, c: (c.dir / "out put", "is a file"),
             lambda r, c: (c.dir / "out put").write_text("mine") and None)

extract_case("extract-lisc", "unpacked-too-deep",
             lambda r, c: ("one level too deep", c.dir / "outer"), _too_deep)
extract_case("extract-lisc", "root-inside-the-database",
             lambda r, c: ("looks like the inside",), lambda r, c: r / "LISC Database")
extract_case("extract-lisc", "empty-class-folder",
             lambda r, c: (r / "LISC Database/Main Dataset/eosi", "empty class folder"),
             lambda r, c: [p.unlink() for p in (r / "LISC Database/Main Dataset/eosi")
                           .iterdir()] and None)
extract_case("extract-lisc", "multi-cell-bogus", lambda r, c: ("--multi-cell", "'join'"),
             extra=("--multi-cell", "join"))

extract_case("extract-iumc", "unknown-class-folder",
             lambda r, c: (r / "Platelets", "unknown IUMC class folder"),
             lambda r, c: (r / "Platelets").mkdir() and None)
extract_case("extract-iumc", "no-images-folder",
             lambda r, c: (r / "Neutrophil" / "images", "images/ and masks/"),
             lambda r, c: shutil.rmtree(r / "Neutrophil" / "images"))
extract_case("extract-iumc", "empty-root", lambda r, c: (c.dir / "empty", "no IUMC class"),
             lambda r, c: (c.dir / "empty").mkdir() or c.dir / "empty")


def crops_case(name: str, text: bytes | str | None, needles: tuple) -> None:
    """extract-mamic with the crop list replaced by ``text`` (None: removed)."""

    def spoil_crops(root: Path, ctx: Ctx) -> None:
        path = root / "crops.csv"
        if text is None:
            path.unlink()
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    extract_case("extract-mamic", f"crops-{name}",
                 lambda r, c: (r / "crops.csv", *needles), spoil_crops)


HEAD = "image,class,x,y,w,h\n"
crops_case("missing", None, ("not found",))
crops_case("zero-byte", b"", ("header",))
crops_case("header-only", HEAD, ("no rows",))
crops_case("wrong-header", "file,label,x,y,w,h\nfield_001.png,_,1,1,9,9\n", ("header",))
crops_case("unknown-class", HEAD + "field_001.png,Sickle,165,165,70,74\n", (":2", "'Sickle'"))
crops_case("non-integer-box", HEAD + "field_001.png,_,165,165,7.5e1,74\n", (":2", "whole"))
crops_case("negative-box", HEAD + "field_001.png,_,-5,165,70,74\n", (":2", "negative"))
crops_case("box-outside-image", HEAD + "field_001.png,_,1270,165,70,74\n", (":2", "outside"))
crops_case("image-not-found", HEAD + "field_009.png,_,165,165,70,74\n", (":2", "field_009"))
crops_case("absolute-image", HEAD + "/etc/passwd,_,165,165,70,74\n", (":2", "file name"))
crops_case("dotdot-image", HEAD + "../crops.csv,_,165,165,70,74\n", (":2", "file name"))
crops_case("short-row", HEAD + "field_001.png,_,165\n", (":2",))
crops_case("non-utf8", HEAD.encode() + b"field_001.png,\xe9\xff,165,165,70,74\n", ("UTF-8",))
crops_case("duplicate-box", HEAD + "field_001.png,_,165,165,70,74\n"
           "field_001.png,Infected,165,165,70,74\n", (":2", ":3"))
extract_case("extract-mamic", "crops-is-a-folder",
             lambda r, c: (r / "crops.csv", "not found"),
             lambda r, c: (r / "crops.csv").unlink() or (r / "crops.csv").mkdir() and None)
extract_case("extract-mamic", "no-images-folder", lambda r, c: (r / "images", "not found"),
             lambda r, c: shutil.rmtree(r / "images"))


def labels_csv_case(name: str, text: bytes | None, needles: tuple) -> None:
    def change(root: Path, ctx: Ctx) -> None:
        path = root / "Class Labels of Dataset 1.csv"
        path.unlink() if text is None else path.write_bytes(text)

    extract_case("extract-wbcseg", f"labels-{name}",
                 lambda r, c: (r / "Class Labels of Dataset 1.csv", *needles), change)


labels_csv_case("missing", None, ("not found",))
labels_csv_case("zero-byte", b"", ("header",))
labels_csv_case("wrong-header", b"id,label\n1,1\n", ("header",))
labels_csv_case("label-7", b"image ID,class label\n1,7\n", (":2", "1-5"))
labels_csv_case("id-not-a-number", b"image ID,class label\none,1\n", (":2",))
labels_csv_case("non-utf8", b"image ID,class label\n1,1\n\xff\xfe,2\n", ("UTF-8",))
labels_csv_case("utf16", "image ID,class label\n1,1\n2,5\n".encode("utf-16"), ("UTF-8",))
labels_csv_case("contradictory-labels", b"image ID,class label\n1,1\n2,5\n1,3\n",
                (":4", "image ID 1"))
extract_case("extract-wbcseg", "dataset-folder-missing", lambda r, c: (r / "Dataset 1",),
             lambda r, c: shutil.rmtree(r / "Dataset 1"))
extract_case("extract-wbcseg", "no-scale-for-dataset", lambda r, c: ("--scale-2",),
             extra=("--dataset", "2"))
extract_case("extract-wbcseg", "dataset-3", lambda r, c: ("--dataset", "3"),
             extra=("--dataset", "3"))


def voc_case(name: str, change: Callable[[Path, Ctx], Path | None], needles) -> None:
    extract_case("extract-voc", name, needles, change)


def _xml(root: Path, stem: str = "img_1") -> Path:
    return root / "BCCD" / "Annotations" / f"{stem}.xml"


def _add_obj(root: Path, obj: str) -> None:
    x = _xml(root)
    x.write_text(x.read_text().replace("</annotation>", obj + "</annotation>"))


BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        '"&lol;&lol;&lol;&lol;">]><annotation><filename>&lol2;</filename></annotation>')
voc_case("xml-malformed", lambda r, c: _xml(r).write_text(_xml(r).read_text()[:-20]) and None,
         lambda r, c: (_xml(r), "malformed XML"))
voc_case("xml-zero-byte", lambda r, c: _xml(r).write_bytes(b"") and None,
         lambda r, c: (_xml(r), "malformed XML"))
voc_case("xml-not-voc", lambda r, c: _xml(r).write_text("<svg></svg>") and None,
         lambda r, c: (_xml(r), "<svg>"))
voc_case("xml-no-bndbox",
         lambda r, c: _add_obj(r, "<object><name>RBC</name></object>"),
         lambda r, c: (_xml(r), "object #4", "<bndbox>"))
voc_case("xml-coordinate-text",
         lambda r, c: _add_obj(r, "<object><name>RBC</name><bndbox><xmin>a</xmin><ymin>1</ymin>"
                                  "<xmax>9</xmax><ymax>9</ymax></bndbox></object>"),
         lambda r, c: (_xml(r), "object #4", "'a' is not a number"))
voc_case("xml-box-far-outside",
         lambda r, c: _add_obj(r, "<object><name>RBC</name><bndbox><xmin>10</xmin><ymin>10"
                                  "</ymin><xmax>40</xmax><ymax>900</ymax></bndbox></object>"),
         lambda r, c: (_xml(r), "object #4", "lies outside"))
voc_case("xml-unknown-class",
         lambda r, c: _add_obj(r, "<object><name>Sickle</name><bndbox><xmin>10</xmin><ymin>10"
                                  "</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object>"),
         lambda r, c: (_xml(r), "object #4", "'Sickle'"))
voc_case("xml-non-utf8", lambda r, c: _xml(r).write_bytes(
    _xml(r).read_bytes().replace(b"RBC", b"R\xe9\xffC", 1)) and None,
    lambda r, c: (_xml(r), "malformed XML"))
voc_case("xml-entity-bomb", lambda r, c: _xml(r).write_text(BOMB) and None,
         lambda r, c: (_xml(r), "unsafe XML"))
@case("extract-voc", "xml-size-contradicts-image")
def _(ctx: Ctx) -> Run:
    """The annotation says 4000x3000 px, the image is 400x300: the image is skipped."""
    args, out = extract_args("extract-voc", ctx)
    xml = _xml(Path(args[1]))
    xml.write_text(xml.read_text().replace("<width>400</width><height>300</height>",
                                           "<width>4000</width><height>3000</height>"))
    _add_obj(Path(args[1]), "<object><name>RBC</name><bndbox><xmin>1001</xmin><ymin>11</ymin>"
             "<xmax>1060</xmax><ymax>70</ymax></bndbox></object>")
    return Run(args, "skip", skipped=(out, "BCCD/JPEGImages/img_1.png#4", "4000x3000"))


voc_case("image-set-missing", lambda r, c: (r / "BCCD/ImageSets/Main/train.txt").unlink(),
         lambda r, c: (r / "BCCD/ImageSets/Main/train.txt", "image set 'train' not found"))
voc_case("image-set-empty",
         lambda r, c: (r / "BCCD/ImageSets/Main/train.txt").write_text("\n# none\n") and None,
         lambda r, c: (r / "BCCD/ImageSets/Main/train.txt", "names no image"))
voc_case("image-set-non-utf8",
         lambda r, c: (r / "BCCD/ImageSets/Main/train.txt").write_bytes(b"img_1\n\xff\n")
         and None, lambda r, c: (r / "BCCD/ImageSets/Main/train.txt", "UTF-8"))
voc_case("image-set-names-absent-image",
         lambda r, c: (r / "BCCD/ImageSets/Main/train.txt").write_text("img_1\nimg_9\n")
         and None, lambda r, c: (r / "BCCD/ImageSets/Main/train.txt", "'img_9'"))
voc_case("image-listed-but-absent",
         lambda r, c: (r / "BCCD/JPEGImages/img_2.png").unlink(),
         lambda r, c: (r / "BCCD/JPEGImages/img_2.png", "does not exist"))
voc_case("two-voc-sets",
         lambda r, c: shutil.copytree(r / "BCCD", r / "BCCD2") and None,
         lambda r, c: (r, "several VOC sets"))


def iml_case(name: str, change: Callable[[Path, Ctx], Path | None], needles) -> None:
    extract_case("extract-iml", name, needles, change)


def _json(root: Path) -> Path:
    return root / "annotations.json"


def _edit_json(edit: Callable[[list], object]) -> Callable[[Path, Ctx], None]:
    def change(root: Path, ctx: Ctx) -> None:
        data = json.loads(_json(root).read_text())
        edit(data)
        _json(root).write_text(json.dumps(data))

    return change


iml_case("json-malformed", lambda r, c: _json(r).write_text(_json(r).read_text()[:-3]) and None,
         lambda r, c: (_json(r), "malformed JSON"))
iml_case("json-zero-byte", lambda r, c: _json(r).write_bytes(b"") and None,
         lambda r, c: (_json(r), "malformed JSON"))
iml_case("json-missing", lambda r, c: _json(r).unlink(), lambda r, c: (_json(r), "not found"))
iml_case("json-not-an-array", lambda r, c: _json(r).write_text('{"images": []}') and None,
         lambda r, c: (_json(r), "JSON array"))
iml_case("json-missing-bbox", _edit_json(lambda d: d[0]["objects"][0].pop("bbox")),
         lambda r, c: (_json(r), "object #0", "'bbox'"))
iml_case("json-bbox-text", _edit_json(lambda d: d[0]["objects"][1]["bbox"].update(w="wide")),
         lambda r, c: (_json(r), "object #1", "'wide'"))
iml_case("json-bbox-nan", _edit_json(lambda d: d[0]["objects"][1]["bbox"].update(w="nan")),
         lambda r, c: (_json(r), "object #1", "finite"))
iml_case("json-bbox-huge", _edit_json(lambda d: d[0]["objects"][1]["bbox"].update(w="1e400")),
         lambda r, c: (_json(r), "object #1", "finite"))
iml_case("json-bbox-list", _edit_json(lambda d: d[0]["objects"][1].update(bbox=[1, 2, 3, 4])),
         lambda r, c: (_json(r), "object #1", "'bbox'"))
iml_case("json-unknown-type", _edit_json(lambda d: d[0]["objects"][1].update(type="platelet")),
         lambda r, c: (_json(r), "'platelet'"))
iml_case("json-image-twice", _edit_json(lambda d: d.append(dict(d[0]))),
         lambda r, c: (_json(r), "annotated twice"))
iml_case("json-non-utf8",
         lambda r, c: _json(r).write_bytes(_json(r).read_bytes().replace(b"ring", b"r\xffng"))
         and None, lambda r, c: (_json(r), "UTF-8"))
iml_case("images-folder-missing", lambda r, c: shutil.rmtree(r / "IML_Malaria"),
         lambda r, c: (r / "IML_Malaria", "not found"))
iml_case("list-missing", lambda r, c: (c.dir / "iml list.txt").unlink(),
         lambda r, c: (c.dir / "iml list.txt", "not found"))
iml_case("list-empty", lambda r, c: (c.dir / "iml list.txt").write_text("") and None,
         lambda r, c: (c.dir / "iml list.txt", "names no image"))
iml_case("list-non-utf8",
         lambda r, c: (c.dir / "iml list.txt").write_bytes(b"PA1.JPG\n\xff\n") and None,
         lambda r, c: (c.dir / "iml list.txt", "UTF-8"))
iml_case("list-names-absent-image",
         lambda r, c: (c.dir / "iml list.txt").write_text("PA1.JPG\nABSENT.JPG\n") and None,
         lambda r, c: (c.dir / "iml list.txt", "ABSENT.JPG"))


# ------------------------------------------------------------------ split, backgrounds, synth


def spoiled_copy(src: Path, dst: Path, name: str, how: str) -> Path:
    """A copy of folder ``src`` at ``dst`` whose file ``name`` is spoiled ``how``."""
    shutil.copytree(src, dst)
    path = dst / name
    if how == "zero-byte":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "text":
        path.write_text("sample_id,class_name\nx,y\n")
    elif how == "wrong-columns":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"colour": ["red"]}), path)
    elif how == "missing":
        path.unlink()
    else:
        raise AssertionError(how)
    return dst


PARQUET_SPOILS = ("zero-byte", "truncated", "text", "wrong-columns", "missing")


def split_args(ctx: Ctx, *extracts, extra=()) -> list:
    return ["split", *extracts, "--out", ctx.out(), "--seed", "1", *extra]


for _how in PARQUET_SPOILS:
    add("split", f"pack-{_how}", lambda ctx, how=_how: Run(
        split_args(ctx, spoiled_copy(ctx.world.extract, ctx.dir / "ex", "samples.parquet",
                                     how)),
        needles=(ctx.dir / "ex" / "samples.parquet",), outputs=(ctx.out(),)))


@case("split", "extract-folder-missing")
def _(ctx: Ctx) -> Run:
    return Run(split_args(ctx, ctx.dir / "ex"), needles=(ctx.dir / "ex",), outputs=(ctx.out(),))


@case("split", "same-extract-twice")
def _(ctx: Ctx) -> Run:
    shutil.copytree(ctx.world.extract, ctx.dir / "ex2")
    return Run(split_args(ctx, ctx.world.extract, ctx.dir / "ex2"),
               needles=("same sample id",), outputs=(ctx.out(),))


@case("split", "shares-add-up-to-1.5")
def _(ctx: Ctx) -> Run:
    return Run(split_args(ctx, ctx.world.extract, extra=("--train", "0.5", "--valid", "0.5",
                                                         "--test", "0.5")),
               needles=("add up to 1",), outputs=(ctx.out(),))


@case("split", "train-share-2")
def _(ctx: Ctx) -> Run:
    return Run(split_args(ctx, ctx.world.extract, extra=("--train", "2")),
               needles=("--train", "[0, 1]"), outputs=(ctx.out(),))


@case("split", "seed-negative")
def _(ctx: Ctx) -> Run:
    return Run(["split", ctx.world.extract, "--out", ctx.out(), "--seed", "-1"],
               needles=("--seed",), outputs=(ctx.out(),))


@case("split", "out-is-a-file")
def _(ctx: Ctx) -> Run:
    ctx.out().write_text("mine")
    return Run(split_args(ctx, ctx.world.extract), needles=(ctx.out(), "is a file"))


@case("split", "paths-with-metacharacters")
def _(ctx: Ctx) -> Run:
    ex = ctx.dir / "ex $(x) `y`"
    shutil.copytree(ctx.world.extract, ex)
    out = ctx.out("split; rm -rf ~")
    return Run(split_args(ctx, ex)[:-4] + ["--out", out, "--seed", "1"], "ok",
               check=lambda: (out / "split.csv").is_file() or pytest.fail("no split.csv"))


def table_spoils(path: Path, how: str) -> None:
    """Spoil the CSV at ``path`` (a split table)."""
    if how == "missing":
        path.unlink()
    elif how == "zero-byte":
        path.write_bytes(b"")
    elif how == "non-utf8":
        path.write_bytes(path.read_bytes() + b"kaggle/\xff\xfe.png,kaggle,_,train\n")
    elif how == "wrong-columns":
        path.write_text("id,set\nx,train\n")
    elif how == "utf16":
        path.write_bytes(path.read_text().encode("utf-16"))
    else:
        raise AssertionError(how)


TABLE_SPOILS = ("missing", "zero-byte", "non-utf8", "wrong-columns", "utf16")


def bg_args(ctx: Ctx, split_csv: Path, extracts: Path, extra=()) -> list:
    return ["backgrounds", "train", "--split-table", split_csv, "--extracts", extracts,
            "--out", ctx.out(), "--seed", "1", "--per-kind", "1", "--size", "300",
            "--rbc-count", "5", "10", *extra]


def spoiled_table(ctx: Ctx, how: str) -> Path:
    path = ctx.dir / "split" / "split.csv"
    path.parent.mkdir()
    shutil.copy(ctx.world.split_csv, path)
    table_spoils(path, how)
    return path


for _how in TABLE_SPOILS:
    add("backgrounds", f"split-table-{_how}", lambda ctx, how=_how: Run(
        bg_args(ctx, spoiled_table(ctx, how), ctx.world.extract),
        needles=(ctx.dir / "split" / "split.csv",), outputs=(ctx.out(),)))
    add("slides", f"split-table-{_how}", lambda ctx, how=_how: Run(
        ["slides", "--split-table", spoiled_table(ctx, how), "--extracts", ctx.world.extract,
         "--out", ctx.out(), "--seed", "1", "--count", "1", "--size", "300"],
        needles=(ctx.dir / "split" / "split.csv",), outputs=(ctx.out(),)))
for _how in PARQUET_SPOILS:
    add("backgrounds", f"pack-{_how}", lambda ctx, how=_how: Run(
        bg_args(ctx, ctx.world.split_csv, spoiled_copy(ctx.world.extract, ctx.dir / "ex",
                                                       "samples.parquet", how)),
        needles=(ctx.dir / "ex" / "samples.parquet",), outputs=(ctx.out(),)))


@case("backgrounds", "rbc-count-reversed")
def _(ctx: Ctx) -> Run:
    return Run(bg_args(ctx, ctx.world.split_csv, ctx.world.extract, ("--rbc-count", "10", "5")),
               needles=("--rbc-count", "10"), outputs=(ctx.out(),))


@case("backgrounds", "size-smaller-than-a-cell")
def _(ctx: Ctx) -> Run:
    return Run(bg_args(ctx, ctx.world.split_csv, ctx.world.extract, ("--size", "12")),
               needles=("--size", "12"), outputs=(ctx.out(),))


@case("backgrounds", "split-name-unknown")
def _(ctx: Ctx) -> Run:
    args = bg_args(ctx, ctx.world.split_csv, ctx.world.extract)
    args[1] = "training"
    return Run(args, needles=("'training'",), outputs=(ctx.out(),))


@case("backgrounds", "per-kind-zero")
def _(ctx: Ctx) -> Run:
    return Run(bg_args(ctx, ctx.world.split_csv, ctx.world.extract, ("--per-kind", "0")),
               needles=("--per-kind",), outputs=(ctx.out(),))


def synth_args(ctx: Ctx, backgrounds: Path, shard: str = "train-0", split_csv=None,
               extra=()) -> list:
    return ["synth", shard, "--split-table", split_csv or ctx.world.split_csv, "--extracts",
            ctx.world.extract, "--backgrounds", backgrounds, "--out", ctx.out(), "--seed", "1",
            "--images", "2", "--mix", "1", "0", "0", "0", "--bg-size", "300", *extra]


for _how in PARQUET_SPOILS:
    add("synth", f"backgrounds-{_how}", lambda ctx, how=_how: Run(
        synth_args(ctx, spoiled_copy(ctx.world.backgrounds("train"), ctx.dir / "bg",
                                     "backgrounds.parquet", how)),
        needles=(ctx.dir / "bg" / "backgrounds.parquet",), outputs=(ctx.out(),)))
for _how in TABLE_SPOILS:
    add("synth", f"split-table-{_how}", lambda ctx, how=_how: Run(
        synth_args(ctx, ctx.world.backgrounds("train"), split_csv=spoiled_table(ctx, how)),
        needles=(ctx.dir / "split" / "split.csv",), outputs=(ctx.out(),)))


@case("synth", "shard-name-without-number")
def _(ctx: Ctx) -> Run:
    return Run(synth_args(ctx, ctx.world.backgrounds("train"), "train0"),
               needles=("'train0'", "train-0"), outputs=(ctx.out(),))


@case("synth", "shard-of-unknown-split")
def _(ctx: Ctx) -> Run:
    return Run(synth_args(ctx, ctx.world.backgrounds("train"), "holdout-0"),
               needles=("'holdout-0'",), outputs=(ctx.out(),))


@case("synth", "mix-all-zero")
def _(ctx: Ctx) -> Run:
    args = synth_args(ctx, ctx.world.backgrounds("train"))
    i = args.index("--mix")
    args[i + 1] = "0"
    return Run(args, needles=("--mix",), outputs=(ctx.out(),))


@case("synth", "images-zero")
def _(ctx: Ctx) -> Run:
    args = synth_args(ctx, ctx.world.backgrounds("train"))
    args[args.index("--images") + 1] = "0"
    return Run(args, needles=("--images",), outputs=(ctx.out(),))


@case("synth", "backgrounds-of-another-split")
def _(ctx: Ctx) -> Run:
    return Run(synth_args(ctx, ctx.world.backgrounds("valid")),
               needles=(ctx.world.backgrounds("valid") / "backgrounds.parquet", "valid"),
               outputs=(ctx.out(),))


# ------------------------------------------------------------------------------ fit-anchors


for _how in PARQUET_SPOILS:
    add("fit-anchors", f"objects-{_how}", lambda ctx, how=_how: Run(
        ["fit-anchors", "--shards", spoiled_copy(ctx.world.synth / "train-0",
                                                 ctx.dir / "synth" / "train-0",
                                                 "objects.parquet", how).parent],
        needles=(ctx.dir / "synth" / "train-0" / "objects.parquet",)))


@case("fit-anchors", "no-train-shard")
def _(ctx: Ctx) -> Run:
    (ctx.dir / "synth" / "valid-0").mkdir(parents=True)
    return Run(["fit-anchors", "--shards", ctx.dir / "synth"],
               needles=(ctx.dir / "synth", "train-*"))


@case("fit-anchors", "real-tiles-missing")
def _(ctx: Ctx) -> Run:
    return Run(["fit-anchors", "--shards", ctx.world.synth, "--real-tiles", ctx.dir / "nowhere"],
               needles=(ctx.dir / "nowhere" / "objects.parquet", "real_tiles"))


@case("fit-anchors", "compare-garbled")
def _(ctx: Ctx) -> Run:
    return Run(["fit-anchors", "--shards", ctx.world.synth, "--compare", "big"],
               needles=("--compare", "'big'"))


# ------------------------------------------------------------------------------ quantize


def quantize_args(ctx: Ctx, model: Path | None = None, calibration: Path | None = None,
                  out: Path | None = None, extra=()) -> list:
    return ["quantize", model or ctx.world.detector, "--calibration",
            calibration or ctx.world.synth / "train-0", "--out", out or ctx.dir / "q.keras",
            "--tiles", "4", *extra]


for _name in ("model-missing", "model-h5", "model-not-a-zip", "model-classifier-as-detector"):
    add("quantize", _name, lambda ctx, n=_name: Run(
        quantize_args(ctx, MODEL_SPOILS[n][0](ctx.world, ctx.dir)),
        needles=MODEL_SPOILS[n][1], outputs=(ctx.dir / "q.keras",)))


@case("quantize", "out-is-the-model")
def _(ctx: Ctx) -> Run:
    model = shutil.copy(ctx.world.detector, ctx.dir / "d.keras")
    return Run(quantize_args(ctx, Path(model), out=Path(model)), needles=("--out", "new file"))


@case("quantize", "out-is-another-model")
def _(ctx: Ctx) -> Run:
    other = Path(shutil.copy(ctx.world.detector, ctx.dir / "mine.keras"))
    return Run(quantize_args(ctx, out=other), needles=(other, "not made by"))


@case("quantize", "out-not-keras")
def _(ctx: Ctx) -> Run:
    return Run(quantize_args(ctx, out=ctx.dir / "q.tflite"), needles=("--out", ".keras"),
               outputs=(ctx.dir / "q.tflite",))


@case("quantize", "calibration-on-the-test-split")
def _(ctx: Ctx) -> Run:
    return Run(quantize_args(ctx, calibration=ctx.world.synth / "test-0"),
               needles=("test-0", "train or valid"), outputs=(ctx.dir / "q.keras",))


@case("quantize", "calibration-not-a-shard")
def _(ctx: Ctx) -> Run:
    return Run(quantize_args(ctx, calibration=ctx.dir / "nowhere"),
               needles=(ctx.dir / "nowhere", "images.tfrecord"), outputs=(ctx.dir / "q.keras",))


@case("quantize", "more-tiles-than-the-shard")
def _(ctx: Ctx) -> Run:
    return Run(quantize_args(ctx, extra=("--tiles", "100000")),
               needles=("--calibration", "--tiles"), outputs=(ctx.dir / "q.keras",))


# ------------------------------------------------------------------ dataset-stats, slides


def stats_args(ctx: Ctx, shard: Path, metrics=None, plot=None) -> list:
    return ["dataset-stats", shard, "--metrics", metrics or ctx.dir / "m.json", "--plot",
            plot or ctx.dir / "p.csv"]


for _how in PARQUET_SPOILS:
    add("dataset-stats", f"objects-{_how}", lambda ctx, how=_how: Run(
        stats_args(ctx, spoiled_copy(ctx.world.synth / "train-0", ctx.dir / "train-0",
                                     "objects.parquet", how)),
        needles=(ctx.dir / "train-0" / "objects.parquet",),
        outputs=(ctx.dir / "m.json", ctx.dir / "p.csv")))


@case("dataset-stats", "metrics-is-a-folder")
def _(ctx: Ctx) -> Run:
    (ctx.dir / "m.json").mkdir()
    return Run(stats_args(ctx, ctx.world.synth / "train-0"),
               needles=(ctx.dir / "m.json", "folder"), outputs=(ctx.dir / "p.csv",))


@case("dataset-stats", "plot-is-a-folder")
def _(ctx: Ctx) -> Run:
    (ctx.dir / "p.csv").mkdir()
    return Run(stats_args(ctx, ctx.world.synth / "train-0"),
               needles=(ctx.dir / "p.csv", "folder"))


# ------------------------------------------------------------------ data-report


def report_args(ctx: Ctx, extracts=None, shard=None, out=None) -> list:
    return ["data-report", "--extracts", extracts or ctx.world.extract, "--shard",
            shard or ctx.world.synth / "test-0", "--data", ctx.world.root, "--out",
            out or ctx.out()]


for _how in PARQUET_SPOILS:
    add("data-report", f"pack-{_how}", lambda ctx, how=_how: Run(
        report_args(ctx, extracts=spoiled_copy(ctx.world.extract, ctx.dir / "kaggle",
                                               "samples.parquet", how)),
        needles=(ctx.dir / "kaggle" / "samples.parquet",), outputs=(ctx.out(),)))
    add("data-report", f"objects-{_how}", lambda ctx, how=_how: Run(
        report_args(ctx, shard=spoiled_copy(ctx.world.synth / "test-0", ctx.dir / "test-0",
                                            "objects.parquet", how)),
        needles=(ctx.dir / "test-0" / "objects.parquet",), outputs=(ctx.out(),)))


@case("data-report", "qc-table-not-utf8")
def _(ctx: Ctx) -> Run:
    folder = ctx.dir / "kaggle"
    shutil.copytree(ctx.world.extract, folder)
    (folder / "qc_counts.csv").write_bytes(b"class_name,class_idx,samples,skipped\n\xff,9,1,0\n")
    return Run(report_args(ctx, extracts=folder), needles=(folder / "qc_counts.csv",),
               outputs=(ctx.out(),))


@case("data-report", "qc-table-missing")
def _(ctx: Ctx) -> Run:
    folder = ctx.dir / "kaggle"
    shutil.copytree(ctx.world.extract, folder)
    (folder / "qc_counts.csv").unlink()
    return Run(report_args(ctx, extracts=folder), needles=(folder / "qc_counts.csv",),
               outputs=(ctx.out(),))


@case("data-report", "tfrecord-truncated")
def _(ctx: Ctx) -> Run:
    shard = ctx.dir / "test-0"
    shutil.copytree(ctx.world.synth / "test-0", shard)
    record = shard / "images.tfrecord"
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    return Run(report_args(ctx, shard=shard), needles=(record,), outputs=(ctx.out(),))


@case("data-report", "out-is-its-input")
def _(ctx: Ctx) -> Run:
    shard = ctx.dir / "test-0"
    shutil.copytree(ctx.world.synth / "test-0", shard)
    return Run(report_args(ctx, shard=shard, out=shard), needles=(shard,))


def slides_args(ctx: Ctx, extracts=None, extra=()) -> list:
    return ["slides", "--split-table", ctx.world.split_csv, "--extracts",
            extracts or ctx.world.extract, "--out", ctx.out(), "--seed", "1", "--count", "1",
            "--size", "300", "--rbc-count", "5", "10", *extra]


for _how in PARQUET_SPOILS:
    add("slides", f"pack-{_how}", lambda ctx, how=_how: Run(
        slides_args(ctx, spoiled_copy(ctx.world.extract, ctx.dir / "ex", "samples.parquet",
                                      how)),
        needles=(ctx.dir / "ex" / "samples.parquet",), outputs=(ctx.out(),)))


@case("slides", "extra-sizes-garbled")
def _(ctx: Ctx) -> Run:
    return Run(slides_args(ctx, extra=("--extra-sizes", "300by200")),
               needles=("--extra-sizes", "300by200"), outputs=(ctx.out(),))


@case("slides", "extra-sizes-tiny")
def _(ctx: Ctx) -> Run:
    return Run(slides_args(ctx, extra=("--extra-sizes", "300x10")),
               needles=("--extra-sizes", ">= 32"), outputs=(ctx.out(),))


@case("slides", "rbc-count-reversed")
def _(ctx: Ctx) -> Run:
    return Run(slides_args(ctx, extra=("--rbc-count", "10", "5")),
               needles=("--rbc-count",), outputs=(ctx.out(),))


@case("slides", "wbc-range-reversed")
def _(ctx: Ctx) -> Run:
    return Run(slides_args(ctx, extra=("--wbc", "4", "1")), needles=("--wbc",),
               outputs=(ctx.out(),))


@case("slides", "size-smaller-than-a-cell")
def _(ctx: Ctx) -> Run:
    return Run(slides_args(ctx, extra=("--size", "12")), needles=("--size", "12"),
               outputs=(ctx.out(),))


# ------------------------------------------------------------------ export, lineage


def export_args(ctx: Ctx, synth: Path, split: str = "train", fmt: str = "coco") -> list:
    return ["export", "--format", fmt, split, ctx.out(), "--synth", synth]


for _how in PARQUET_SPOILS:
    add("export", f"objects-{_how}", lambda ctx, how=_how: Run(
        export_args(ctx, spoiled_copy(ctx.world.synth, ctx.dir / "synth",
                                      "train-0/objects.parquet", how)),
        needles=(ctx.dir / "synth" / "train-0" / "objects.parquet",), outputs=(ctx.out(),)))
for _how in ("zero-byte", "truncated", "text", "missing"):
    add("export", f"tfrecord-{_how}", lambda ctx, how=_how: Run(
        export_args(ctx, spoiled_copy(ctx.world.synth, ctx.dir / "synth",
                                      "train-0/images.tfrecord", how)),
        needles=(ctx.dir / "synth" / "train-0",), outputs=(ctx.out(),)))


@case("export", "split-name-with-slash")
def _(ctx: Ctx) -> Run:
    return Run(export_args(ctx, ctx.world.synth, "../train"), needles=("'../train'",),
               outputs=(ctx.out(),))


@case("export", "no-shards-of-the-split")
def _(ctx: Ctx) -> Run:
    return Run(export_args(ctx, ctx.world.synth, "holdout"), needles=("holdout",),
               outputs=(ctx.out(),))


@case("export", "synth-folder-missing")
def _(ctx: Ctx) -> Run:
    return Run(export_args(ctx, ctx.dir / "synth"), needles=(ctx.dir / "synth",),
               outputs=(ctx.out(),))


@case("export", "format-bogus")
def _(ctx: Ctx) -> Run:
    return Run(export_args(ctx, ctx.world.synth, fmt="voc"), needles=("--format", "'voc'"),
               outputs=(ctx.out(),))


@case("export", "objects-of-another-shard")
def _(ctx: Ctx) -> Run:
    synth = ctx.dir / "synth"
    shutil.copytree(ctx.world.synth, synth)
    shutil.copy(synth / "valid-0" / "objects.parquet", synth / "train-0" / "objects.parquet")
    return Run(export_args(ctx, synth), needles=(synth / "train-0",), outputs=(ctx.out(),))


def lineage_data(ctx: Ctx, how: str | None = None) -> Path:
    data = ctx.dir / "data"
    data.mkdir()
    shutil.copytree(ctx.world.synth, data / "synth")
    if how is not None:
        spoiled_copy(data / "synth" / "train-0", data / "tmp", "objects.parquet", how)
        shutil.rmtree(data / "synth" / "train-0")
        (data / "tmp").rename(data / "synth" / "train-0")
    return data


for _how in ("zero-byte", "truncated", "text", "wrong-columns"):
    add("lineage", f"objects-{_how}", lambda ctx, how=_how: Run(
        ["lineage", "train-0-000000", "--data", lineage_data(ctx, how)],
        needles=(ctx.dir / "data" / "synth" / "train-0" / "objects.parquet",)))


@case("lineage", "id-garbled")
def _(ctx: Ctx) -> Run:
    return Run(["lineage", "train_0_1", "--data", lineage_data(ctx)], needles=("'train_0_1'",))


@case("lineage", "id-of-absent-shard")
def _(ctx: Ctx) -> Run:
    return Run(["lineage", "train-7-000000", "--data", lineage_data(ctx)],
               needles=(ctx.dir / "data" / "synth" / "train-7",))


@case("lineage", "id-past-the-shard")
def _(ctx: Ctx) -> Run:
    return Run(["lineage", "train-0-000999", "--data", lineage_data(ctx)],
               needles=("train-0-000999",))


@case("lineage", "data-folder-missing")
def _(ctx: Ctx) -> Run:
    return Run(["lineage", "train-0-000000", "--data", ctx.dir / "nowhere"],
               needles=(ctx.dir / "nowhere",))


@case("lineage", "id-and-raw-file")
def _(ctx: Ctx) -> Run:
    return Run(["lineage", "train-0-000000", "--raw-file", "x.png", "--data", ctx.dir],
               needles=("IMAGE_ID or --raw-file",))


@case("lineage", "neither-id-nor-raw-file")
def _(ctx: Ctx) -> Run:
    return Run(["lineage", "--data", ctx.dir], needles=("IMAGE_ID or --raw-file",))


@case("lineage", "raw-file-unknown")
def _(ctx: Ctx) -> Run:
    data = lineage_data(ctx)
    shutil.copytree(ctx.world.extract, data / "extract" / "kaggle")
    (ctx.dir / "stray.png").write_bytes(b"\x89PNG")
    return Run(["lineage", "--raw-file", ctx.dir / "stray.png", "--data", data],
               needles=(ctx.dir / "stray.png",))


@case("lineage", "raw-file-pack-corrupt")
def _(ctx: Ctx) -> Run:
    data = lineage_data(ctx)
    spoiled_copy(ctx.world.extract, data / "extract" / "kaggle", "samples.parquet", "text")
    return Run(["lineage", "--raw-file", "cell_images/Uninfected/x.png", "--data", data],
               needles=(data / "extract" / "kaggle" / "samples.parquet",))


# ------------------------------------------------------------------ params


def params_project(ctx: Ctx) -> Path:
    """A project copy (schema, presets, params.yaml) in the scratch folder."""
    root = ctx.dir / "project"
    for rel in ("params.yaml", "config", "workflow/schemas"):
        src, dst = PROJECT / rel, root / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return root


def params_case(name: str, change: Callable[[dict], object] | bytes | None,
                needles: tuple = ()) -> None:
    """``params check`` on the project's params.yaml edited by ``change`` (a dict edit, raw
    bytes, or None: removed)."""

    def build(ctx: Ctx) -> Run:
        path = params_project(ctx) / "params.yaml"
        if change is None:
            path.unlink()
        elif isinstance(change, bytes):
            path.write_bytes(change)
        else:
            doc = yaml.safe_load(path.read_text())
            change(doc)
            path.write_text(yaml.safe_dump(doc))
        return Run(["params", "check", path], needles=(path, *needles))

    add("params check", name, build)


params_case("missing", None, ("not found",))
params_case("zero-byte", b"", ("top level",))
params_case("comments-only", b"# nothing here\n", ("top level",))
params_case("malformed-yaml", b"seed: [1, 2\nsplit: {train: 0.8\n", ("not valid YAML",))
params_case("tab-indent", b"seed: 1\nsplit:\n\ttrain: 0.8\n", ("not valid YAML",))
params_case("non-utf8", b"seed: 1\nname: \xff\xfe\n", ("UTF-8",))
params_case("top-level-list", b"- seed\n- split\n", ("top level",))
params_case("missing-key", lambda d: d.pop("split"), ("'split'",))
params_case("unknown-key", lambda d: d.update(colour="red"), ("colour",))
params_case("wrong-type", lambda d: d["split"].update(train="most"), ("split.train",))
params_case("shares-contradict", lambda d: d["split"].update(train=0.9), ("add up to 1",))
params_case("rbc-min-above-max", lambda d: d["backgrounds"].update(rbc_min=400, rbc_max=300),
            ("rbc_min",))
params_case("shard-misnamed", lambda d: d["synth"]["shards"].update(
    {"valid-9": {"split": "train", "images": 2}}), ("valid-9",))
params_case("shard-key-number", lambda d: d["synth"]["shards"].update(
    {7: {"split": "train", "images": 2}}), ("synth.shards",))
params_case("real-share-without-real-tiles", lambda d: d["train_detector"].update(
    real_share=0.5), ("real_share",))


@case("params check", "is-a-folder")
def _(ctx: Ctx) -> Run:
    root = params_project(ctx)
    return Run(["params", "check", root / "config"], needles=(root / "config",))


@case("params check", "outside-a-project")
def _(ctx: Ctx) -> Run:
    """Far from any project the packaged schema still checks the file: a bad value is named."""
    path = ctx.dir / "my params.yaml"
    path.write_text((PROJECT / "params.yaml").read_text().replace("  batch: 50", "  batch: 0", 1))
    return Run(["params", "check", path], needles=(path, "batch"))


def params_use(name: str, preset: str, needles: tuple) -> None:
    def build(ctx: Ctx) -> Run:
        root = params_project(ctx)
        ctx.monkeypatch.chdir(root)
        return Run(["params", "use", preset], needles=needles)

    add("params use", name, build)


params_use("unknown-preset", "fast", ("params-fast.yaml", "tiny"))
params_use("path-traversal", "../../params", ("params-../../params.yaml",))
params_use("empty-name", "", ("params-.yaml",))


@case("params use", "no-config-folder")
def _(ctx: Ctx) -> Run:
    return Run(["params", "use", "tiny"], needles=("config/params-tiny.yaml",))


@case("params use", "preset-invalid")
def _(ctx: Ctx) -> Run:
    root = params_project(ctx)
    ctx.monkeypatch.chdir(root)
    (root / "config" / "params-broken.yaml").write_text("seed: [\n")
    return Run(["params", "use", "broken"], needles=("params-broken.yaml", "not valid YAML"))


# ------------------------------------------------------------------ demo-sources, global


DEMO = ["--seed", "1", "--lisc-per-class", "1", "--lisc-mixt", "0", "--iumc-per-class", "1",
        "--mamic-fields", "1", "--kaggle-per-class", "1"]


@case("demo-sources", "out-is-a-file")
def _(ctx: Ctx) -> Run:
    ctx.out().write_text("mine")
    return Run(["demo-sources", ctx.out(), *DEMO], needles=(ctx.out(), "is a file"))


@case("demo-sources", "out-is-a-users-folder")
def _(ctx: Ctx) -> Run:
    ctx.out().mkdir()
    (ctx.out() / "notes.txt").write_text("mine")
    return Run(["demo-sources", ctx.out(), *DEMO], needles=(ctx.out(), "not made by"))


@case("demo-sources", "seed-missing")
def _(ctx: Ctx) -> Run:
    return Run(["demo-sources", ctx.out()], needles=("--seed",), outputs=(ctx.out(),))


@case("demo-sources", "seed-negative")
def _(ctx: Ctx) -> Run:
    return Run(["demo-sources", ctx.out(), "--seed", "-3"], needles=("--seed",),
               outputs=(ctx.out(),))


@case("demo-sources", "per-class-zero")
def _(ctx: Ctx) -> Run:
    return Run(["demo-sources", ctx.out(), *DEMO, "--kaggle-per-class", "0"],
               needles=("--kaggle-per-class",), outputs=(ctx.out(),))


@case("global", "log-is-a-folder")
def _(ctx: Ctx) -> Run:
    (ctx.dir / "logs").mkdir()
    return Run(["--log", ctx.dir / "logs", "params", "use", "none"],
               needles=(ctx.dir / "logs", "--log"))


@case("global", "unknown-command")
def _(ctx: Ctx) -> Run:
    return Run(["extract-everything"], needles=("'extract-everything'",))


@case("global", "no-command")
def _(ctx: Ctx) -> Run:
    return Run([], needles=("command",))


@case("global", "unknown-option")
def _(ctx: Ctx) -> Run:
    return Run(["split", ctx.world.extract, "--out", ctx.out(), "--seed", "1", "--colour",
                "red"], needles=("--colour",), outputs=(ctx.out(),))


# ------------------------------------------------------------------ annotated sets


def label_spoils(fmt: str) -> dict[str, tuple[Callable[[Path], None], tuple]]:
    """Bad label files of one format: name -> (spoil(labels), words of the error)."""
    if fmt == "voc":
        def xml(labels: Path) -> Path:
            return labels / "img_0.xml"

        def append(obj: str) -> Callable[[Path], None]:
            return lambda lab: xml(lab).write_text(xml(lab).read_text().replace(
                "</annotation>", obj + "</annotation>")) and None

        return {
            "voc-folder-missing": (lambda lab: shutil.rmtree(lab), ("not found",)),
            "voc-malformed": (lambda lab: xml(lab).write_text("<annotation><object>") and None,
                              ("img_0.xml", "malformed XML")),
            "voc-zero-byte": (lambda lab: xml(lab).write_bytes(b"") and None,
                              ("img_0.xml", "malformed XML")),
            "voc-box-text": (append("<object><name>RBC</name><bndbox><xmin>1</xmin><ymin>"
                                    "one</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"),
                             ("img_0.xml", "'one'")),
            "voc-unknown-label": (append("<object><name>Sickle</name><bndbox><xmin>1</xmin>"
                                         "<ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
                                         "</object>"), ("'Sickle'",)),
            "voc-box-far-outside": (append("<object><name>RBC</name><bndbox><xmin>1</xmin>"
                                           "<ymin>1</ymin><xmax>900</xmax><ymax>9</ymax>"
                                           "</bndbox></object>"),
                                    ("img_0.xml", "lies outside")),
        }

    def edit(change: Callable[[object], object]) -> Callable[[Path], None]:
        def spoil_json(path: Path) -> None:
            doc = json.loads(path.read_text())
            doc = change(doc) or doc
            path.write_text(json.dumps(doc))

        return spoil_json

    common = {
        f"{fmt}-missing": (lambda p: p.unlink(), ("not found",)),
        f"{fmt}-malformed": (lambda p: p.write_text(p.read_text()[:-5]) and None,
                             ("malformed JSON",)),
        f"{fmt}-zero-byte": (lambda p: p.write_bytes(b"") and None, ("malformed JSON",)),
        f"{fmt}-non-utf8": (lambda p: p.write_bytes(p.read_bytes()[:-1] + b'\xff\xfe]')
                            and None, ("UTF-8",)),
    }
    if fmt == "iml":
        return {**common,
                "iml-object": (edit(lambda d: {"image_name": "x"}), ("JSON array",)),
                "iml-bbox-text": (edit(lambda d: d[0]["objects"][0]["bbox"].update(x="left")),
                                  ("object #0", "'left'")),
                "iml-image-twice": (edit(lambda d: d.append(d[0])), ("annotated twice",))}
    return {**common,
            "coco-array": (edit(lambda d: [d]), ("JSON object",)),
            "coco-no-images": (edit(lambda d: d.pop("images") and None), ("'images'",)),
            "coco-bbox-3-values": (edit(lambda d: d["annotations"][0].update(bbox=[1, 2, 3])),
                                   ("annotations[0]", "bbox")),
            "coco-unknown-category": (edit(lambda d: d["annotations"][0].update(
                category_id=99)), ("annotations[0]", "99")),
            "coco-unknown-image-id": (edit(lambda d: d["annotations"][0].update(image_id=99)),
                                      ("annotations[0]", "99")),
            "coco-width-zero": (edit(lambda d: d["images"][0].update(width=0)),
                                ("images[0]", "width")),
            "coco-image-id-twice": (edit(lambda d: d["images"].append(
                {**d["images"][1], "id": d["images"][0]["id"]})), ("images[2]", "id")),
            "coco-file-name-twice": (edit(lambda d: d["images"].append(
                {**d["images"][0], "id": 77})), ("images[2]", "img_0.png")),
            "coco-category-id-twice": (edit(lambda d: d["categories"].append(
                {"id": 1, "name": "WBC"})), ("categories[3]", "id 1"))}


def annotated_set(ctx: Ctx, fmt: str) -> tuple[Path, Path]:
    """(images folder, labels) of a 2-image annotated set in format ``fmt``."""
    images, labels = write_smear_voc(ctx.dir / "set")
    if fmt == "coco":
        return images, smear_coco(images, labels, ctx.dir / "set" / "coco.json")
    if fmt == "iml":
        return images, smear_iml(images, labels, ctx.dir / "set" / "annotations.json")
    return images, labels


IML_MAP = {"classes": ["infected", "healthy"],
           "model": {**{c: None for c in ("Eosinophil", "Basophil", "Neutrophil",
                                          "Lymphocytes", "Monocytes", "partialWBC",
                                          "Thrombocytes", "Clumps")},
                     "Infected": "infected", "_": "healthy"},
           "dataset": {"red blood cell": "healthy", "ring": "infected"},
           "train": {"red blood cell": "_", "ring": "Infected"}}
"""A class map for smear_iml's labels."""
CLASS_MAPS = {"voc": "bccd", "coco": "bccd"}


def class_map_for(ctx: Ctx, fmt: str) -> str | Path:
    if fmt != "iml":
        return CLASS_MAPS[fmt]
    path = ctx.dir / "iml map.yaml"
    path.write_text(yaml.safe_dump(IML_MAP))
    return path


def class_map_spoils() -> dict[str, tuple[bytes | None, tuple]]:
    """Bad class-map YAML files: name -> (content, words of the error); None: absent."""
    good = yaml.safe_load((PROJECT / "bloodcell/sources/class_maps/bccd.yaml").read_text())
    no_train = {k: v for k, v in good.items() if k != "train"}
    unreached = {**good, "classes": [*good["classes"], "Sickle"]}
    return {
        "class-map-missing": (None, ("no such file",)),
        "class-map-zero-byte": (b"", ("expected a mapping",)),
        "class-map-malformed": (b"classes: [WBC\nmodel: {\n", ("not valid YAML",)),
        "class-map-non-utf8": (b"classes: [W\xffC]\n", ("UTF-8",)),
        "class-map-unreachable-class": (yaml.safe_dump(unreached).encode(), ("'Sickle'",)),
        "class-map-without-train": (yaml.safe_dump(no_train).encode(), ("train:",)),
    }


def write_class_map(ctx: Ctx, content: bytes | None) -> Path:
    path = ctx.dir / "my map.yaml"
    if content is not None:
        path.write_bytes(content)
    return path


# ------------------------------------------------------------------ real-tiles


def tiles_args(ctx: Ctx, images: Path, labels: Path, fmt: str = "voc", listing="all",
               scale="1", cmap: str | Path | None = None, extra=()) -> list:
    return ["real-tiles", "--set", "s", fmt, images, labels, listing, scale,
            cmap or class_map_for(ctx, fmt), "--out", ctx.out(), "--seed", "1", "--variants",
            "1", *extra]


def tiles_image_case(kind: str) -> Callable[[Ctx], Run]:
    def build(ctx: Ctx) -> Run:
        images, labels = annotated_set(ctx, "voc")
        spoil(images / "img_1.png", kind)
        args = tiles_args(ctx, images, labels)
        if kind == "palette":
            return Run(args, "ok", check=lambda: (ctx.out() / "images.tfrecord").is_file()
                       or pytest.fail("no tiles"))
        return Run(args, needles=(images / "img_1.png", REASON[kind]), outputs=(ctx.out(),))

    return build


for _kind in IMAGE_KINDS:
    add("real-tiles", f"image-{_kind}", tiles_image_case(_kind))


def tiles_label_case(fmt: str, name: str) -> Callable[[Ctx], Run]:
    def build(ctx: Ctx) -> Run:
        images, labels = annotated_set(ctx, fmt)
        change, words = label_spoils(fmt)[name]
        change(labels)
        return Run(tiles_args(ctx, images, labels, fmt), needles=words, outputs=(ctx.out(),))

    return build


for _fmt in ("voc", "iml", "coco"):
    for _name in label_spoils(_fmt):
        add("real-tiles", _name, tiles_label_case(_fmt, _name))


def tiles_map_case(name: str) -> Callable[[Ctx], Run]:
    def build(ctx: Ctx) -> Run:
        images, labels = annotated_set(ctx, "voc")
        content, words = class_map_spoils()[name]
        path = write_class_map(ctx, content)
        return Run(tiles_args(ctx, images, labels, cmap=path), needles=(path, *words),
                   outputs=(ctx.out(),))

    return build


for _name in class_map_spoils():
    if _name != "class-map-unreachable-class":
        add("real-tiles", _name, tiles_map_case(_name))


@case("real-tiles", "format-bogus")
def _(ctx: Ctx) -> Run:
    images, labels = annotated_set(ctx, "voc")
    args = tiles_args(ctx, images, labels)
    args[3] = "yolo"
    return Run(args, needles=("'yolo'",), outputs=(ctx.out(),))


for _scale_text in ("0", "nan", "inf", "big"):
    add("real-tiles", f"scale-{_scale_text}", lambda ctx, s=_scale_text: Run(
        tiles_args(ctx, *annotated_set(ctx, "voc"), scale=s), needles=(f"'{s}'", "0.01..20"),
        outputs=(ctx.out(),)))


@case("real-tiles", "list-missing")
def _(ctx: Ctx) -> Run:
    images, labels = annotated_set(ctx, "voc")
    return Run(tiles_args(ctx, images, labels, listing=ctx.dir / "list.txt"),
               needles=(ctx.dir / "list.txt", "not found"), outputs=(ctx.out(),))


@case("real-tiles", "list-non-utf8")
def _(ctx: Ctx) -> Run:
    images, labels = annotated_set(ctx, "voc")
    (ctx.dir / "list.txt").write_bytes(b"img_0\n\xff\xfe\n")
    return Run(tiles_args(ctx, images, labels, listing=ctx.dir / "list.txt"),
               needles=(ctx.dir / "list.txt", "UTF-8"), outputs=(ctx.out(),))


@case("real-tiles", "list-names-absent-image")
def _(ctx: Ctx) -> Run:
    images, labels = annotated_set(ctx, "voc")
    (ctx.dir / "list.txt").write_text("img_0\nimg_5\n")
    return Run(tiles_args(ctx, images, labels, listing=ctx.dir / "list.txt"),
               needles=(ctx.dir / "list.txt", "'img_5'"), outputs=(ctx.out(),))


@case("real-tiles", "duplicate-set-names")
def _(ctx: Ctx) -> Run:
    images, labels = annotated_set(ctx, "voc")
    args = tiles_args(ctx, images, labels)
    return Run(args + ["--set", *map(str, args[2:9])], needles=("--set",),
               outputs=(ctx.out(),))


@case("real-tiles", "stride-5")
def _(ctx: Ctx) -> Run:
    return Run(tiles_args(ctx, *annotated_set(ctx, "voc"), extra=("--stride", "5")),
               needles=("--stride",), outputs=(ctx.out(),))


@case("real-tiles", "variants-9")
def _(ctx: Ctx) -> Run:
    return Run(tiles_args(ctx, *annotated_set(ctx, "voc"), extra=("--variants", "9")),
               needles=("--variants",), outputs=(ctx.out(),))


@case("real-tiles", "set-with-six-values")
def _(ctx: Ctx) -> Run:
    images, labels = annotated_set(ctx, "voc")
    return Run(["real-tiles", "--set", "s", "voc", images, labels, "all", "1", "--out",
                ctx.out(), "--seed", "1"], needles=("--set",), outputs=(ctx.out(),))


# ------------------------------------------------------------------ models

MODEL_SPOILS = {
    "model-missing": (lambda w, d: d / "absent.keras", ("does not exist",)),
    "model-h5": (lambda w, d: (d / "model.h5").write_bytes(b"\x89HDF\r\n") and d / "model.h5",
                 ("only .keras",)),
    "model-not-a-zip": (lambda w, d: w.not_a_zip, ("not a readable Keras model",)),
    "model-zip-not-a-model": (lambda w, d: w.zip_not_model, ("not a readable Keras model",)),
    "model-classifier-as-detector": (lambda w, d: w.classifier, ("not the classifier",)),
    "model-is-a-folder": (lambda w, d: (d / "m.keras").mkdir(exist_ok=True) or d / "m.keras",
                          ("does not exist",)),
}
"""--model problems: name -> (path(world, scratch), words of the error)."""


def train_args(ctx: Ctx, kind: str, shards: Path | None = None, extra=()) -> list:
    args = [f"train-{kind}", "--shards", shards or ctx.world.synth, "--model",
            ctx.dir / "m.keras", "--history", ctx.dir / "h.csv", "--metrics",
            ctx.dir / "metrics.json", "--seed", "1", "--epochs", "1", "--batch", "2",
            "--schedule", "1:1e-3"]
    if kind == "detector":
        args += ["--init", ctx.world.classifier, "--anchors", "1x1,2x2"]
    return args + list(extra)


def train_outputs(ctx: Ctx) -> tuple:
    return ctx.dir / "m.keras", ctx.dir / "h.csv", ctx.dir / "metrics.json"


for _kind in ("classifier", "detector"):
    add(f"train-{_kind}", "shards-missing", lambda ctx, k=_kind: Run(
        train_args(ctx, k, ctx.dir / "synth"), needles=(ctx.dir / "synth", "does not exist"),
        outputs=train_outputs(ctx)))
    add(f"train-{_kind}", "no-valid-shard", lambda ctx, k=_kind: Run(
        train_args(ctx, k, shutil.copytree(ctx.world.synth / "train-0",
                                           ctx.dir / "synth" / "train-0").parent),
        needles=(ctx.dir / "synth", "valid-*"), outputs=train_outputs(ctx)))
    add(f"train-{_kind}", "model-h5", lambda ctx, k=_kind: Run(
        [a if a != ctx.dir / "m.keras" else ctx.dir / "m.h5" for a in train_args(ctx, k)],
        needles=(ctx.dir / "m.h5", ".keras"), outputs=train_outputs(ctx)))
    add(f"train-{_kind}", "epochs-zero", lambda ctx, k=_kind: Run(
        train_args(ctx, k, extra=("--epochs", "0")), needles=("--epochs",),
        outputs=train_outputs(ctx)))
    add(f"train-{_kind}", "schedule-garbled", lambda ctx, k=_kind: Run(
        train_args(ctx, k, extra=("--schedule", "fast")), needles=("--schedule", "'fast'"),
        outputs=train_outputs(ctx)))
    add(f"train-{_kind}", "schedule-not-from-epoch-1", lambda ctx, k=_kind: Run(
        train_args(ctx, k, extra=("--schedule", "3:1e-3")), needles=("--schedule",),
        outputs=train_outputs(ctx)))
    add(f"train-{_kind}", "tfrecord-corrupt", lambda ctx, k=_kind: Run(
        train_args(ctx, k, spoiled_copy(ctx.world.synth, ctx.dir / "synth",
                                        "valid-0/images.tfrecord", "truncated")),
        needles=(ctx.dir / "synth" / "valid-0" / "images.tfrecord",),
        outputs=train_outputs(ctx)))

for _name in ("model-missing", "model-h5", "model-not-a-zip", "model-zip-not-a-model"):
    add("train-detector", f"init-{_name.removeprefix('model-')}", lambda ctx, n=_name: Run(
        [*train_args(ctx, "detector"), "--init", MODEL_SPOILS[n][0](ctx.world, ctx.dir)],
        needles=("--init" if n == "model-h5" else MODEL_SPOILS[n][0](ctx.world, ctx.dir),),
        outputs=train_outputs(ctx)))


@case("train-detector", "real-share-without-real-tiles")
def _(ctx: Ctx) -> Run:
    return Run(train_args(ctx, "detector", extra=("--real-share", "0.5")),
               needles=("--real-share", "--real-tiles"), outputs=train_outputs(ctx))


@case("train-detector", "anchors-garbled")
def _(ctx: Ctx) -> Run:
    return Run(train_args(ctx, "detector", extra=("--anchors", "big")),
               needles=("--anchors", "'big'"), outputs=train_outputs(ctx))


def eval_args(ctx: Ctx, model: Path, shards: Path | None = None, histories=None) -> list:
    return ["evaluate", "--shards", shards or ctx.world.synth, "--model", model,
            "--histories", *(histories or ctx.world.histories), "--anchors", "1x1,2x2",
            "--metrics", ctx.dir / "e.json", "--plots", ctx.dir / "plots", "--figures",
            ctx.dir / "figs"]


def eval_outputs(ctx: Ctx) -> tuple:
    return ctx.dir / "e.json", ctx.dir / "plots", ctx.dir / "figs"


def slides_eval_args(ctx: Ctx, model: Path, slides: Path | None = None) -> list:
    return ["evaluate-slides", "--slides", slides or ctx.world.slides, "--model", model,
            "--anchors", "1x1,2x2", "--metrics", ctx.dir / "s.json", "--figures",
            ctx.dir / "figs"]


for _name, (_model, _words) in MODEL_SPOILS.items():
    add("evaluate", _name, lambda ctx, m=_model, w=_words: Run(
        eval_args(ctx, m(ctx.world, ctx.dir)), needles=(m(ctx.world, ctx.dir), *w),
        outputs=eval_outputs(ctx)))
    add("evaluate-slides", _name, lambda ctx, m=_model, w=_words: Run(
        slides_eval_args(ctx, m(ctx.world, ctx.dir)), needles=(m(ctx.world, ctx.dir), *w),
        outputs=(ctx.dir / "s.json", ctx.dir / "figs")))


@case("evaluate", "no-test-shard")
def _(ctx: Ctx) -> Run:
    synth = ctx.dir / "synth"
    shutil.copytree(ctx.world.synth / "train-0", synth / "train-0")
    return Run(eval_args(ctx, ctx.world.detector, synth), needles=("test-*",),
               outputs=eval_outputs(ctx))


@case("evaluate", "history-missing")
def _(ctx: Ctx) -> Run:
    hist = (ctx.world.histories[0], ctx.dir / "d.csv")
    return Run(eval_args(ctx, ctx.world.detector, histories=hist),
               needles=(ctx.dir / "d.csv",), outputs=eval_outputs(ctx))


@case("evaluate", "history-not-a-csv")
def _(ctx: Ctx) -> Run:
    (ctx.dir / "d.csv").write_bytes(b"\xff\xfe\x00garbage")
    hist = (ctx.world.histories[0], ctx.dir / "d.csv")
    return Run(eval_args(ctx, ctx.world.detector, histories=hist),
               needles=(ctx.dir / "d.csv",), outputs=eval_outputs(ctx))


@case("evaluate", "plots-and-figures-the-same")
def _(ctx: Ctx) -> Run:
    args = eval_args(ctx, ctx.world.detector)
    args[args.index("--figures") + 1] = ctx.dir / "plots"
    return Run(args, needles=(ctx.dir / "plots",), outputs=eval_outputs(ctx))


def spoiled_slides(ctx: Ctx, change: Callable[[Path], None]) -> Path:
    folder = ctx.dir / "slides"
    shutil.copytree(ctx.world.slides, folder)
    change(folder)
    return folder


for _name, _change, _words in (
        ("ground-truth-missing", lambda f: (f / "ground_truth.json").unlink(),
         ("ground_truth.json", "does not exist")),
        ("ground-truth-malformed", lambda f: (f / "ground_truth.json").write_text("{"),
         ("ground_truth.json", "malformed JSON")),
        ("ground-truth-not-coco", lambda f: (f / "ground_truth.json").write_text("[]"),
         ("ground_truth.json",)),
        ("ground-truth-non-utf8", lambda f: (f / "ground_truth.json").write_bytes(b'{"\xff":1}'),
         ("ground_truth.json", "UTF-8")),
        ("slide-image-missing", lambda f: (f / "images" / "slide_000.png").unlink(),
         ("slide_000.png",)),
        ("slide-image-truncated", lambda f: (f / "images" / "slide_000.png").write_bytes(
            (f / "images" / "slide_000.png").read_bytes()[:50]), ("slide_000.png",))):
    add("evaluate-slides", _name, lambda ctx, c=_change, w=_words: Run(
        slides_eval_args(ctx, ctx.world.detector, spoiled_slides(ctx, c)), needles=w,
        outputs=(ctx.dir / "s.json", ctx.dir / "figs")))


# ------------------------------------------------------------------ detect


def smears(ctx: Ctx, n: int = 1) -> Path:
    folder = ctx.dir / "my smears"
    folder.mkdir()
    for i in range(n):
        img = np.full((150, 180, 3), (215, 220, 235), np.uint8)
        cv2.circle(img, (60, 60), 17, (150, 120, 200), -1)
        cv2.imwrite(str(folder / f"smear {i}.png"), img)
    return folder


def detect_args(ctx: Ctx, *inputs, model=None, extra=()) -> list:
    return ["detect", *inputs, "--out", ctx.out(), "--model", model or ctx.world.detector,
            *extra]


def failed_row(out: Path, name: str, done: tuple[str, ...] = ()) -> Callable[[], None]:
    """Check of a detect run with a bad image: its summary.csv row says failed, it has no
    outputs, and the images in ``done`` have all theirs."""
    def check() -> None:
        rows = {r["image_id"]: r for r in read_csv(out / "summary.csv")}
        assert rows[name]["status"] == "failed" and rows[name]["reason"], rows[name]
        assert not list(out.glob(f"{name}.*")), sorted(out.iterdir())
        for other in done:
            assert rows[other]["status"] == "ok", rows[other]
            for suffix in (".png", ".geojson", ".cells.csv"):
                assert (out / f"{other}{suffix}").is_file(), (other, suffix)

    return check


def detect_image_case(kind: str) -> Callable[[Ctx], Run]:
    def build(ctx: Ctx) -> Run:
        folder = smears(ctx)
        spoil(folder / "smear 0.png", kind)
        args = detect_args(ctx, folder)
        if kind in UNREADABLE:
            return Run(args, needles=(folder / "smear 0.png",), made=(ctx.out(),),
                       check=failed_row(ctx.out(), "smear 0"))
        return Run(args, "ok", check=lambda: (ctx.out() / "smear 0.geojson").is_file()
                   or pytest.fail("no geojson"))

    return build


for _kind in IMAGE_KINDS:
    add("detect", f"image-{_kind}", detect_image_case(_kind), fake_model=True)


@case("detect", "one-bad-image-among-good", fake_model=True)
def _(ctx: Ctx) -> Run:
    folder = smears(ctx, 3)
    spoil(folder / "smear 1.png", "truncated")
    return Run(detect_args(ctx, folder), needles=(folder / "smear 1.png", "1 of 3 image(s)"),
               made=(ctx.out(),),
               check=failed_row(ctx.out(), "smear 1", ("smear 0", "smear 2")))


@case("detect", "input-missing", fake_model=True)
def _(ctx: Ctx) -> Run:
    return Run(detect_args(ctx, ctx.dir / "nowhere.png"), needles=(ctx.dir / "nowhere.png",),
               outputs=(ctx.out(),))


@case("detect", "folder-without-images", fake_model=True)
def _(ctx: Ctx) -> Run:
    (ctx.dir / "empty").mkdir()
    (ctx.dir / "empty" / "notes.txt").write_text("x")
    return Run(detect_args(ctx, ctx.dir / "empty"), needles=(ctx.dir / "empty", "no images"),
               outputs=(ctx.out(),))


@case("detect", "input-is-a-fifo", fake_model=True)
def _(ctx: Ctx) -> Run:
    os.mkfifo(ctx.dir / "pipe.png")
    return Run(detect_args(ctx, ctx.dir / "pipe.png"), needles=(ctx.dir / "pipe.png",),
               outputs=(ctx.out(),))


for _text in ("0", "50", "nan", "-1"):
    add("detect", f"scale-{_text}", lambda ctx, t=_text: Run(
        detect_args(ctx, smears(ctx), extra=("--scale", t)), needles=("--scale",),
        outputs=(ctx.out(),)), fake_model=True)
for _text in ("0", "wide"):
    add("detect", f"rbc-diameter-{_text}", lambda ctx, t=_text: Run(
        detect_args(ctx, smears(ctx), extra=("--rbc-diameter", t)),
        needles=("--rbc-diameter",), outputs=(ctx.out(),)), fake_model=True)
for _name, (_model, _words) in MODEL_SPOILS.items():
    add("detect", _name, lambda ctx, m=_model, w=_words: Run(
        detect_args(ctx, smears(ctx), model=m(ctx.world, ctx.dir)),
        needles=(m(ctx.world, ctx.dir), *w), outputs=(ctx.out(),)))


# ------------------------------------------------------------------ evaluate-images


def ei_args(ctx: Ctx, images: Path, labels: Path, fmt: str = "voc", cmap=None, model=None,
            extra=()) -> list:
    return ["evaluate-images", images, "--labels", labels, "--format", fmt, "--class-map",
            cmap or class_map_for(ctx, fmt), "--model", model or ctx.world.detector,
            "--metrics", ctx.dir / "metrics.json", "--figures", ctx.dir / "figs", *extra]


def ei_outputs(ctx: Ctx) -> tuple:
    return ctx.dir / "metrics.json", ctx.dir / "figs"


def ei_image_case(kind: str) -> Callable[[Ctx], Run]:
    def build(ctx: Ctx) -> Run:
        images, labels = annotated_set(ctx, "voc")
        spoil(images / "img_1.png", kind)

        def check() -> None:
            result = json.loads((ctx.dir / "metrics.json").read_text())
            skipped = [s["where"] for s in result["skipped_images"]]
            if kind in UNREADABLE:
                assert skipped == [str(images / "img_1.png")], skipped
                assert result["images"] == 1
            else:
                assert skipped == [] and result["images"] == 2, result

        return Run(ei_args(ctx, images, labels), "ok", check=check)

    return build


for _kind in IMAGE_KINDS:
    add("evaluate-images", f"image-{_kind}", ei_image_case(_kind), fake_model=True)


@case("evaluate-images", "every-image-unreadable", fake_model=True)
def _(ctx: Ctx) -> Run:
    images, labels = annotated_set(ctx, "voc")
    for p in images.iterdir():
        p.write_bytes(b"")
    return Run(ei_args(ctx, images, labels), needles=(images / "img_0.png", "empty file"),
               outputs=ei_outputs(ctx))


def ei_label_case(fmt: str, name: str) -> Callable[[Ctx], Run]:
    def build(ctx: Ctx) -> Run:
        images, labels = annotated_set(ctx, fmt)
        change, words = label_spoils(fmt)[name]
        change(labels)
        return Run(ei_args(ctx, images, labels, fmt), needles=words, outputs=ei_outputs(ctx))

    return build


for _fmt in ("voc", "iml", "coco"):
    for _name in label_spoils(_fmt):
        add("evaluate-images", _name, ei_label_case(_fmt, _name), fake_model=True)


def ei_map_case(name: str) -> Callable[[Ctx], Run]:
    def build(ctx: Ctx) -> Run:
        images, labels = annotated_set(ctx, "voc")
        content, words = class_map_spoils()[name]
        path = write_class_map(ctx, content)
        return Run(ei_args(ctx, images, labels, cmap=path), needles=(path, *words),
                   outputs=ei_outputs(ctx))

    return build


for _name in class_map_spoils():
    if _name != "class-map-without-train":
        add("evaluate-images", _name, ei_map_case(_name), fake_model=True)


@case("evaluate-images", "class-map-unknown-name", fake_model=True)
def _(ctx: Ctx) -> Run:
    return Run(ei_args(ctx, *annotated_set(ctx, "voc"), cmap="bcdd"),
               needles=("'bcdd'", "bccd, iml"), outputs=ei_outputs(ctx))


@case("evaluate-images", "format-contradicts-labels", fake_model=True)
def _(ctx: Ctx) -> Run:
    images, labels = annotated_set(ctx, "voc")
    return Run(ei_args(ctx, images, labels, "coco", cmap="bccd"), needles=(labels,),
               outputs=ei_outputs(ctx))


@case("evaluate-images", "images-list-non-utf8", fake_model=True)
def _(ctx: Ctx) -> Run:
    (ctx.dir / "val.txt").write_bytes(b"img_0\n\xff\n")
    return Run(ei_args(ctx, *annotated_set(ctx, "voc"), extra=("--images-list",
                                                                ctx.dir / "val.txt")),
               needles=(ctx.dir / "val.txt", "UTF-8"), outputs=ei_outputs(ctx))


@case("evaluate-images", "images-list-empty", fake_model=True)
def _(ctx: Ctx) -> Run:
    (ctx.dir / "val.txt").write_bytes(b"")
    return Run(ei_args(ctx, *annotated_set(ctx, "voc"), extra=("--images-list",
                                                                ctx.dir / "val.txt")),
               needles=(ctx.dir / "val.txt", "names no image"), outputs=ei_outputs(ctx))


for _text in ("0", "100"):
    add("evaluate-images", f"scale-{_text}", lambda ctx, t=_text: Run(
        ei_args(ctx, *annotated_set(ctx, "voc"), extra=("--scale", t)), needles=("--scale",),
        outputs=ei_outputs(ctx)), fake_model=True)


@case("evaluate-images", "max-dets-zero", fake_model=True)
def _(ctx: Ctx) -> Run:
    return Run(ei_args(ctx, *annotated_set(ctx, "voc"), extra=("--max-dets", "0")),
               needles=("--max-dets",), outputs=ei_outputs(ctx))


for _name, (_model, _words) in MODEL_SPOILS.items():
    add("evaluate-images", _name, lambda ctx, m=_model, w=_words: Run(
        ei_args(ctx, *annotated_set(ctx, "voc"), model=m(ctx.world, ctx.dir)),
        needles=(m(ctx.world, ctx.dir), *w), outputs=ei_outputs(ctx)))



# ----------------------------------------------------------------------------- the test


def fake_detector(tiles: np.ndarray) -> tuple[np.ndarray, ...]:
    """A stand-in compiled detector: no detection in any tile."""
    n = len(tiles)
    return (np.zeros((n, 1, 4), np.float32), np.zeros((n, 1), np.float32),
            np.zeros((n, 1), np.int32), np.zeros(n, np.int32))


def snapshot(root: Path) -> dict[str, tuple]:
    """(size, mtime) of every file and folder under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = ((True, 0, 0) if p.is_dir() and not p.is_symlink()
                                               else (False, st.st_size, st.st_mtime_ns))
    return out


def without(snap: dict[str, tuple], made: list[str]) -> dict[str, tuple]:
    """A snapshot without the entries at or under the ``made`` paths (relative)."""
    return {k: v for k, v in snap.items()
            if not any(k == m or k.startswith(m + "/") for m in made)}


def leftovers(*folders: Path) -> list[str]:
    return sorted(str(p) for f in folders if f.is_dir() for p in f.rglob("*")
                  if ".tmp-" in p.name)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def messages(err: str) -> list[str]:
    """The lines of stderr a person reads: no blank line, progress bar or third-party log."""
    parts = [p for ln in err.splitlines() for p in ln.split("\r")]
    return [p for p in parts if p.strip() and not NOISE.match(p) and not TQDM.match(p)]


def error_line(err: str) -> str:
    """The one error line of stderr; fails on a traceback or any other stray line."""
    assert "Traceback" not in err, err[-3000:]
    lines = messages(err)
    errors = [ln for ln in lines if ERROR_LINE.match(ln)]
    assert len(errors) == 1, err[-3000:]
    assert lines[-1] == errors[0], err[-3000:]
    stray = [ln for ln in lines[:-1] if " WARNING " not in ln]  # a command's own warnings
    assert not stray, err[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("world"))


@pytest.fixture(autouse=True)
def _quiet_tf(monkeypatch):
    """TensorFlow's thread counts can only be set before it starts; in this process they are
    whatever the first test left, so the commands' setting is skipped here."""
    from bloodcell.common import tf_threads
    from bloodcell.evaluate import commands as evaluate_commands
    from bloodcell.train import commands as train_commands
    for module in (tf_threads, train_commands, evaluate_commands):
        monkeypatch.setattr(module, "set_tf_threads", lambda: None)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, world: World, tmp_path: Path, capfd, monkeypatch) -> None:
    scratch = tmp_path / SCRATCH
    scratch.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run = case.build(Ctx(world, scratch, monkeypatch))
    if case.fake_model:
        from bloodcell.model import inference
        monkeypatch.setattr(inference, "load_detector", lambda path: None)
        monkeypatch.setattr(inference, "tile_detector", lambda *a, **k: fake_detector)
    before = snapshot(scratch)
    capfd.readouterr()
    code, err = run_cli(["-q", *run.args], capfd)
    assert leftovers(scratch, cwd, world.root) == []
    if run.expect == "error":
        assert code == 2, err[-3000:]
        line = error_line(err)
        for needle in run.needles:
            assert str(needle) in line, f"{needle!r} not in {line!r}"
        assert FIX.search(line), f"no fix in {line!r}"
        for out in run.outputs:
            assert not Path(out).exists(), out
        made = [Path(m).relative_to(scratch).as_posix() for m in run.made]
        assert without(snapshot(scratch), made) == before, "an input was changed"
        assert list(cwd.iterdir()) == []
        if run.check is not None:
            run.check()
        return
    assert code == 0, err[-3000:]
    stray = [ln for ln in messages(err) if " WARNING " not in ln]
    assert not stray, err[-3000:]
    if run.expect == "skip":
        folder, entry, word = run.skipped
        rows = [r for r in read_csv(folder / "qc_skipped.csv") if r["path"] == entry]
        assert rows, (entry, read_csv(folder / "qc_skipped.csv"))
        assert all(word.lower() in r["reason"].lower() for r in rows), rows
    if run.check is not None:
        run.check()


def test_every_command_has_cases() -> None:
    from bloodcell.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set(sub.choices) - {"params"} | {"params check", "params use"}
    per = Counter(c.command for c in CASES)
    assert commands <= set(per), sorted(commands - set(per))
    assert all(per[c] >= 4 for c in commands), per
    assert len({c.id for c in CASES}) == len(CASES)


def case_counts() -> dict[str, int]:
    """Number of catalogue cases per command (for the report)."""
    return dict(sorted(Counter(c.command for c in CASES).items()))


# ----------------------------------------------------------------------------- storage


MOUNTS = {
    "read-only": 'mount --bind "$D" "$D" && mount -o remount,bind,ro "$D"',
    "full-disk": 'mount -t tmpfs -o size=4k tmpfs "$D"',
}
"""How the output folder $D is spoiled inside a private mount namespace."""


@pytest.fixture(scope="module")
def namespaces(tmp_path_factory) -> bool:
    """Whether unprivileged user and mount namespaces (``unshare -rm``) can mount here."""
    folder = tmp_path_factory.mktemp("probe")
    if shutil.which("unshare") is None:
        return False
    probe = f'D="{folder}"; {MOUNTS["full-disk"]} && {MOUNTS["read-only"]}'
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def storage_args(command: str, world: World, out: Path) -> list:
    if command == "split":
        return ["split", world.extract, "--out", out, "--seed", "1"]
    if command == "extract-kaggle":
        return ["extract-kaggle", world.root / "kaggle", out, "--scale", "0.3"]
    return ["dataset-stats", world.synth / "train-0", "--metrics", out / "stats.json",
            "--plot", out / "plot.csv"]


@pytest.mark.parametrize("kind", list(MOUNTS))
@pytest.mark.parametrize("command", ["split", "extract-kaggle", "dataset-stats"])
def test_an_unwritable_or_full_output_folder(command: str, kind: str, world: World,
                                             namespaces: bool, tmp_path: Path, capfd) -> None:
    """The output folder's file system is read-only, or full (a tiny tmpfs): one line naming
    the output and the fix, exit 2, nothing left in the folder. chmod 555 does not stop root,
    so the folder is spoiled by a mount in a private user + mount namespace; without those the
    read-only case falls back to chmod 555 when not root, else the case is skipped."""
    folder = tmp_path / SCRATCH
    folder.mkdir()
    out = folder / "out"
    args = storage_args(command, world, out)
    if not namespaces:
        if kind == "full-disk" or os.geteuid() == 0:
            pytest.skip("unprivileged user/mount namespaces (unshare -rm) are not available "
                        "here, so a read-only or full file system cannot be made without "
                        "root" + (", and chmod 555 does not stop root" if os.geteuid() == 0
                                  else ""))
        folder.chmod(0o555)
        try:
            code, err = run_cli(["-q", *args], capfd)
        finally:
            folder.chmod(0o755)
        listing = [p.name for p in folder.iterdir()]
    else:
        script = f'{MOUNTS[kind]} || exit 97\n"$@"\nrc=$?\nls -A "$D"\nexit $rc'
        env = {**os.environ, "D": str(folder)}
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", sys.executable,
                               "-m", "bloodcell", "-q", *map(str, args)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode != 97, proc.stderr
        code, err, listing = proc.returncode, proc.stderr, proc.stdout.split()
    assert code == 2, err[-3000:]
    line = error_line(err)
    assert str(folder) in line and "cannot write" in line, line
    assert ("free disk space" if kind == "full-disk" else "writable") in line, line
    assert listing == [], listing
