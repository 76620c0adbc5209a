"""The `bloodcell` command line: one subcommand per pipeline stage, plus params tools.

A Snakemake rule and the DVC stage of the same name call the same subcommand with the same
arguments. User errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import sys
from pathlib import Path

from bloodcell import __version__
from bloodcell.common.errors import UserError

log = logging.getLogger("bloodcell")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line, with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def threshold(text: str) -> int | str:
    if text == "otsu":
        return text
    value = int(text)
    if not 1 <= value <= 254:
        raise argparse.ArgumentTypeError(f"must be otsu or 1..254, got {text}")
    return value


def sizes_list(text: str) -> list[tuple[int, int]]:
    """Parse 'WxH,WxH' (pixels) or 'none'."""
    if text == "none":
        return []
    try:
        sizes = [tuple(int(v) for v in item.split("x")) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH,WxH or none, got {text}") from None
    if any(len(s) != 2 or min(s) < 32 for s in sizes):
        raise argparse.ArgumentTypeError(f"each size is WxH with sides >= 32 px, got {text}")
    return sizes  # type: ignore[return-value]


def add_sample_args(p: argparse.ArgumentParser, min_area: int) -> None:
    """Options every extract-<db> stage takes."""
    p.add_argument("--scale", type=positive_float, required=True,
                   help="resize factor from native pixels to the common 40x scale")
    p.add_argument("--pad", type=non_negative_int, default=2,
                   help="pixels of context kept around each cell's mask box (default 2)")
    p.add_argument("--min-area", type=positive_int, default=min_area,
                   help=f"smallest cell mask in native px (default {min_area})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bloodcell", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bloodcell {__version__}")
    parser.add_argument("--log", type=Path, help="also write the log to this file")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo-sources", help="make the procedural demo databases",
                       description="Render seeded stand-ins for LISC, IUMC, MAMIC and Kaggle in "
                       "their real on-disk layouts under OUTDIR (replaced atomically).")
    p.add_argument("outdir", type=Path)
    p.add_argument("--seed", type=non_negative_int, required=True)
    p.add_argument("--lisc-per-class", type=positive_int, default=24)
    p.add_argument("--lisc-mixt", type=non_negative_int, default=4)
    p.add_argument("--iumc-per-class", type=positive_int, default=24)
    p.add_argument("--mamic-fields", type=positive_int, default=12)
    p.add_argument("--kaggle-per-class", type=positive_int, default=800)

    p = sub.add_parser("extract-lisc", help="cut LISC WBCs with the expert masks",
                       description="Cut the WBCs of ROOT/'LISC Database' with their expert "
                       "masks, bring them to the 40x scale, write OUTDIR/samples.parquet and "
                       "QC tables.")
    p.add_argument("root", type=Path, help="folder holding 'LISC Database/'")
    p.add_argument("outdir", type=Path)
    add_sample_args(p, 2000)
    p.add_argument("--multi-cell", choices=["skip", "split"], default="skip",
                   help="an image whose mask holds several cells: skip it or keep each cell")

    p = sub.add_parser("extract-iumc", help="cut IUMC single WBCs with their masks",
                       description="Cut the WBCs of ROOT/<Class>/images with masks from "
                       "ROOT/<Class>/masks, bring them to the 40x scale.")
    p.add_argument("root", type=Path, help="folder holding the IUMC class folders")
    p.add_argument("outdir", type=Path)
    add_sample_args(p, 1000)

    p = sub.add_parser("extract-mamic", help="cut MAMIC cells at the crop list's boxes",
                       description="Cut the cells listed in CROPS from ROOT/images with "
                       "threshold masks, bring them to the 40x scale.")
    p.add_argument("root", type=Path, help="folder holding images/")
    p.add_argument("crops", type=Path, help="crop list CSV: image,class,x,y,w,h")
    p.add_argument("outdir", type=Path)
    add_sample_args(p, 60)

    p = sub.add_parser("extract-kaggle", help="cut Kaggle malaria cells with threshold masks",
                       description="Mask the cells of ROOT/cell_images/{Parasitized,Uninfected} "
                       "by a threshold, bring them to the 40x scale.")
    p.add_argument("root", type=Path, help="folder holding cell_images/")
    p.add_argument("outdir", type=Path)
    add_sample_args(p, 400)
    p.add_argument("--threshold", type=threshold, default=12,
                   help="cell-vs-black threshold on the brightest channel, or otsu")

    p = sub.add_parser("extract-wbcseg", help="cut single WBCs of wbc-seg (Zheng 2018) with "
                       "their masks",
                       description="Cut the WBCs of ROOT/'Dataset N'/NNN.bmp with the "
                       "nucleus+cytoplasm masks NNN.png, classes from ROOT/'Class Labels of "
                       "Dataset N.csv', bring them to the 40x scale (each dataset has its own "
                       "magnification, hence its own scale).")
    p.add_argument("root", type=Path, help="folder holding 'Dataset 1/', 'Dataset 2/' and the "
                   "class-label CSVs")
    p.add_argument("outdir", type=Path)
    p.add_argument("--dataset", type=int, choices=[1, 2], nargs="+", default=[1, 2],
                   help="which datasets to extract (default: 1 2)")
    p.add_argument("--scale-1", type=positive_float, metavar="S",
                   help="resize factor of Dataset 1 (120x120 crops) to the 40x scale; "
                   "required when Dataset 1 is extracted")
    p.add_argument("--scale-2", type=positive_float, metavar="S",
                   help="resize factor of Dataset 2 (300x300 crops) to the 40x scale; "
                   "required when Dataset 2 is extracted")
    p.add_argument("--pad", type=non_negative_int, default=2,
                   help="pixels of context kept around each cell's mask box (default 2)")
    p.add_argument("--min-area", type=positive_int, default=1000,
                   help="smallest cell mask in native px (default 1000)")

    p = sub.add_parser("extract-voc", help="cut the cells of Pascal VOC smears (BCCD) at their "
                       "boxes",
                       description="Cut the annotated cells of the images of one image set of "
                       "ROOT/BCCD (JPEGImages/, Annotations/*.xml, ImageSets/Main/NAME.txt) with "
                       "threshold masks inside each box, bring them to the 40x scale. RBC -> _, "
                       "Platelets -> Thrombocytes, WBC -> WBC (type unknown).")
    p.add_argument("root", type=Path, help="folder holding BCCD/ (or the VOC set folder itself)")
    p.add_argument("outdir", type=Path)
    p.add_argument("--image-set", required=True, metavar="NAME",
                   help="use the images of ImageSets/Main/NAME.txt (e.g. train)")
    add_sample_args(p, 60)

    p = sub.add_parser("extract-iml", help="cut the RBCs of IML malaria smears at their boxes",
                       description="Cut the annotated cells of the listed images of "
                       "ROOT/IML_Malaria with ROOT/annotations.json boxes and threshold masks, "
                       "bring them to the 40x scale. 'red blood cell' -> _, ring / trophozoite "
                       "/ schizont / gametocyte -> Infected, difficult ignored.")
    p.add_argument("root", type=Path, help="folder holding IML_Malaria/ and annotations.json")
    p.add_argument("outdir", type=Path)
    p.add_argument("--images-list", type=Path, required=True, metavar="FILE",
                   help="text file naming the images to use, one a line "
                   "(e.g. config/lists/iml-train.txt)")
    add_sample_args(p, 60)

    p = sub.add_parser("split", help="assign samples to train/valid/test",
                       description="Split every source and class's samples 80/10/10 (or as "
                       "given) by sample; write OUTDIR/split.csv and summary.csv.")
    p.add_argument("extracts", type=Path, nargs="+", help="extract stage output folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=non_negative_int, required=True)
    p.add_argument("--train", type=share, default=0.8)
    p.add_argument("--valid", type=share, default=0.1)
    p.add_argument("--test", type=share, default=0.1)

    add_dataset_parsers(sub)
    from bloodcell.dataset import real_tiles
    from bloodcell.detect import command as detect
    from bloodcell.evaluate import annotated_images as evaluate_images
    from bloodcell.provenance import data_report, export, lineage
    from bloodcell.train import commands as cli_train

    real_tiles.add_parser(sub)
    data_report.add_parser(sub)
    export.add_parser(sub)
    lineage.add_parser(sub)
    cli_train.add_parsers(sub)
    cli_train.add_eval_parsers(sub)
    detect.add_parser(sub)
    evaluate_images.add_parser(sub)

    p = sub.add_parser("params", help="check params.yaml or switch to a preset")
    psub = p.add_subparsers(dest="params_command", required=True, parser_class=_Parser)
    q = psub.add_parser("check", help="validate a params file against the schema")
    q.add_argument("file", type=Path, nargs="?", default=Path("params.yaml"))
    q = psub.add_parser("use", help="make config/params-NAME.yaml the params.yaml")
    q.add_argument("name")
    return parser


def add_inputs(p: argparse.ArgumentParser) -> None:
    """The split table and extract folders every dataset stage reads."""
    p.add_argument("--split-table", type=Path, required=True, help="data/split/split.csv")
    p.add_argument("--extracts", type=Path, nargs="+", required=True,
                   help="extract stage output folders (data/extract/<db>)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (replaced only when an earlier run of the same command "
                   "made it)")
    p.add_argument("--seed", type=non_negative_int, required=True)


def add_dataset_parsers(sub) -> None:
    """Subcommands of the backgrounds, synth and slides stages."""
    p = sub.add_parser("backgrounds", help="build one split's RBC backgrounds",
                       description="Place the split's RBC samples on square backgrounds "
                       "(healthy-only, infected-only, mixed); write the recipes "
                       "(backgrounds.parquet) and a contact sheet.")
    p.add_argument("split", choices=["train", "valid", "test"])
    add_inputs(p)
    p.add_argument("--per-kind", type=positive_int, required=True,
                   help="backgrounds of each of the three kinds")
    p.add_argument("--size", type=positive_int, default=1000, help="side in px")
    p.add_argument("--rbc-count", type=positive_int, nargs=2, default=[250, 320],
                   metavar=("MIN", "MAX"), help="RBCs per background")
    p.add_argument("--max-iou", type=share, default=0.3, help="largest RBC box IoU")
    p.add_argument("--mixed-infected", type=share, default=0.3,
                   help="share of infected RBCs in mixed backgrounds")

    p = sub.add_parser("synth", help="make one shard of synthetic 224x224 images",
                       description="Cut 224x224 windows from the split's backgrounds, affix "
                       "WBC, thrombocyte and clump samples (and partial WBCs); write "
                       "images.tfrecord, objects.parquet and a contact sheet.")
    p.add_argument("shard", help="shard name SPLIT-N, e.g. train-0")
    add_inputs(p)
    p.add_argument("--backgrounds", type=Path, required=True, help="data/backgrounds/<split>")
    p.add_argument("--images", type=positive_int, required=True, help="images in this shard")
    p.add_argument("--mix", type=share, nargs=4, required=True,
                   metavar=("BACKGROUND", "SINGLE", "DOUBLE", "TRIPLE"),
                   help="shares of images with 0, 1, 2, 3 affixed cells")
    p.add_argument("--partial-share", type=share, default=0.2)
    p.add_argument("--corner-share", type=share, default=0.4)
    p.add_argument("--min-visible", type=share, default=0.5)
    p.add_argument("--bg-size", type=positive_int, default=1000)

    p = sub.add_parser("dataset-stats", help="metrics and a class plot of the synthetic data",
                       description="Count images and objects per split and class from the "
                       "shards' objects tables; write a metrics JSON and a plot CSV.")
    p.add_argument("shards", type=Path, nargs="+", help="synth shard folders")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--plot", type=Path, required=True, help="CSV (split, class_name, objects)")

    p = sub.add_parser("slides", help="make whole synthetic test smears",
                       description="Render whole smears from test-split samples with cells "
                       "straddling 224-px tile seams; write PNGs and COCO ground truth.")
    add_inputs(p)
    p.add_argument("--count", type=non_negative_int, default=20, help="square slides")
    p.add_argument("--size", type=positive_int, default=1000, help="side of square slides")
    p.add_argument("--extra-sizes", type=sizes_list, default=[],
                   help="further slides as WxH px, comma-separated (e.g. 1300x900,500x700), "
                   "or none")
    p.add_argument("--wbc", type=non_negative_int, nargs=2, default=[1, 4])
    p.add_argument("--thrombocytes", type=non_negative_int, nargs=2, default=[2, 8])
    p.add_argument("--clumps", type=non_negative_int, nargs=2, default=[0, 2])
    p.add_argument("--seam-share", type=share, default=0.5)
    p.add_argument("--min-visible", type=share, default=0.5)
    p.add_argument("--rbc-count", type=positive_int, nargs=2, default=[250, 320])
    p.add_argument("--max-iou", type=share, default=0.3)
    p.add_argument("--mixed-infected", type=share, default=0.3)


def cmd_dataset_stats(a: argparse.Namespace) -> None:
    from bloodcell.dataset.stats import run

    run(a.shards, a.metrics, a.plot)


def check_range(option: str, pair: list[int]) -> None:
    """UserError unless a MIN MAX option pair has MIN <= MAX."""
    if pair[0] > pair[1]:
        raise UserError(f"{option} {pair[0]} {pair[1]}: MIN exceeds MAX; give MIN MAX with MIN "
                        "<= MAX (see params.yaml)")


def cmd_backgrounds(a: argparse.Namespace) -> None:
    from bloodcell.dataset.backgrounds import BackgroundConfig, run

    check_range("--rbc-count", a.rbc_count)
    cfg = BackgroundConfig(a.seed, a.split, a.per_kind, a.size, *a.rbc_count, a.max_iou,
                           a.mixed_infected)
    run(a.split_table, a.extracts, a.out, cfg)


def cmd_synth(a: argparse.Namespace) -> None:
    from bloodcell.dataset.shards import shard_key
    from bloodcell.dataset.synth import SynthConfig, run

    try:
        split, shard = shard_key(a.shard)
    except ValueError as err:
        raise UserError(f"{err}; name shards like train-0 in synth.shards") from None
    if not sum(a.mix) > 0:
        raise UserError("--mix: all four shares are 0; give at least one share > 0 "
                        "(synth.mix in params.yaml)")
    cfg = SynthConfig(a.seed, split, shard, a.images, tuple(a.mix), a.partial_share,
                      a.corner_share, a.min_visible, a.bg_size)
    run(a.split_table, a.extracts, a.backgrounds, a.out, cfg)


def cmd_slides(a: argparse.Namespace) -> None:
    from bloodcell.dataset.backgrounds import BackgroundConfig
    from bloodcell.dataset.synthetic_slides import SlidesConfig, run

    for option in ("rbc_count", "wbc", "thrombocytes", "clumps"):
        check_range(f"--{option.replace('_', '-')}", getattr(a, option))
    sizes = tuple([(a.size, a.size)] * a.count + a.extra_sizes)
    bg = BackgroundConfig(a.seed, "test", 1, a.size, *a.rbc_count, a.max_iou, a.mixed_infected)
    cfg = SlidesConfig(a.seed, sizes, tuple(a.wbc), tuple(a.thrombocytes), tuple(a.clumps),
                       a.seam_share, a.min_visible, bg)
    run(a.split_table, a.extracts, a.out, cfg)


def cmd_export(a: argparse.Namespace) -> None:
    from bloodcell.provenance.export import cmd_export as run

    run(a)


def cmd_lineage(a: argparse.Namespace) -> None:
    from bloodcell.provenance.lineage import cmd_lineage as run

    run(a)


def cmd_demo_sources(a: argparse.Namespace) -> None:
    from bloodcell.common.atomic import atomic_dir
    from bloodcell.sources.demo.databases import DemoConfig, make_demo_sources

    cfg = DemoConfig(a.seed, a.lisc_per_class, a.lisc_mixt, a.iumc_per_class, a.mamic_fields,
                     a.kaggle_per_class)
    from bloodcell.sources.extract import worker_count

    with atomic_dir(a.outdir, a.command) as tmp:
        make_demo_sources(tmp, cfg, workers=worker_count())
    log.info("demo databases -> %s", a.outdir)


def cmd_extract(a: argparse.Namespace) -> None:
    from bloodcell.common.atomic import check_output
    from bloodcell.sources.extract import run_jobs, worker_count, write_extract

    db = a.command.removeprefix("extract-")
    inputs = [a.root, getattr(a, "crops", None), getattr(a, "images_list", None)]
    check_output(a.outdir, a.command, inputs)  # before the (long) extraction
    if db == "lisc":
        from bloodcell.sources import lisc as mod

        jobs, skips = mod.plan(a.root, a.scale, a.pad, a.min_area, a.multi_cell)
    elif db == "iumc":
        from bloodcell.sources import iumc as mod

        jobs, skips = mod.plan(a.root, a.scale, a.pad, a.min_area)
    elif db == "mamic":
        from bloodcell.sources import mamic as mod

        jobs, skips = mod.plan(a.root, a.crops, a.scale, a.pad, a.min_area)
    elif db == "wbcseg":
        from bloodcell.sources import wbcseg as mod

        jobs, skips = mod.plan(a.root, {1: a.scale_1, 2: a.scale_2}, a.pad, a.min_area,
                               a.dataset)
    elif db == "voc":
        from bloodcell.sources import voc as mod

        jobs, skips = mod.plan(a.root, a.image_set, a.scale, a.pad, a.min_area)
    elif db == "iml":
        from bloodcell.sources import iml as mod

        jobs, skips = mod.plan(a.root, a.images_list, a.scale, a.pad, a.min_area)
    else:
        from bloodcell.sources import kaggle as mod

        jobs, skips = mod.plan(a.root, a.scale, a.pad, a.min_area, a.threshold)
    log.info("%s: %d files from %s", db, len(jobs), a.root)
    items = skips + run_jobs(jobs, mod.process, worker_count())
    write_extract(mod.SOURCE, items, mod.CLASSES, a.outdir, a.command, inputs)


def cmd_split(a: argparse.Namespace) -> None:
    from bloodcell.dataset.split import SplitConfig, run

    run(a.extracts, a.out, SplitConfig(a.seed, a.train, a.valid, a.test))


def cmd_params(a: argparse.Namespace) -> None:
    from bloodcell.common import params
    if a.params_command == "check":
        params.check(a.file)
        print(f"{a.file}: valid")
    else:
        target = params.use(a.name)
        print(f"config/params-{a.name}.yaml -> {target}")


HANDLERS = {
    "demo-sources": cmd_demo_sources,
    "extract-lisc": cmd_extract,
    "extract-iumc": cmd_extract,
    "extract-mamic": cmd_extract,
    "extract-kaggle": cmd_extract,
    "extract-wbcseg": cmd_extract,
    "extract-voc": cmd_extract,
    "extract-iml": cmd_extract,
    "split": cmd_split,
    "backgrounds": cmd_backgrounds,
    "synth": cmd_synth,
    "slides": cmd_slides,
    "dataset-stats": cmd_dataset_stats,
    "export": cmd_export,
    "lineage": cmd_lineage,
    "params": cmd_params,
}


def setup_logging(logfile: Path | None, quiet: bool) -> None:
    """Log to stderr and, if given, to ``logfile`` (its folder is created)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile is not None:
        logfile.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)


def quiet_opencv() -> None:
    """OpenCV's own log lines off (e.g. "PNG input buffer is incomplete", "can't read
    header"): every image problem is reported once, by bloodcell, naming the file."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `bloodcell` console script; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines off
    quiet_opencv()
    args = build_parser().parse_args(argv)
    try:
        setup_logging(args.log, args.quiet)
    except OSError as err:
        sys.stderr.write(f"bloodcell: error: --log {args.log}: cannot write the log file "
                         f"({err.strerror}); give a writable file path\n")
        return 2
    try:
        HANDLERS.get(args.command, getattr(args, "func", None))(args)
    except UserError as err:
        log.debug("user error", exc_info=True)
        sys.stderr.write(f"bloodcell: error: {err}\n")
        if args.log is not None:
            with open(args.log, "a") as f:
                f.write(f"bloodcell: error: {err}\n")
        return 2
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        log.debug("file system error", exc_info=True)  # a full disk or a denied file
        where = f"{err.filename}: " if err.filename else ""
        sys.stderr.write(f"bloodcell: error: {where}{err.strerror}; free disk space or fix the "
                         "permissions, or choose another output folder\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("bloodcell: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
