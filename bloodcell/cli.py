"""The `bloodcell` command line: one subcommand per pipeline stage, plus params tools.

This module registers the subcommands of COMMAND_MODULES and runs the chosen one: it sets up
logging, silences OpenCV's own messages and maps a UserError or a full disk to one line with
exit code 2. The commands themselves live in their stage families' modules. A Snakemake rule
and the DVC stage of the same name call the same subcommand with the same arguments. User
errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
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


COMMAND_MODULES: tuple[str, ...] = (
    "bloodcell.sources.demo.databases",
    "bloodcell.sources.lisc",
    "bloodcell.sources.iumc",
    "bloodcell.sources.mamic",
    "bloodcell.sources.kaggle",
    "bloodcell.sources.wbcseg",
    "bloodcell.sources.voc",
    "bloodcell.sources.iml",
    "bloodcell.dataset.split",
    "bloodcell.dataset.backgrounds",
    "bloodcell.dataset.synth",
    "bloodcell.dataset.stats",
    "bloodcell.dataset.synthetic_slides",
    "bloodcell.dataset.real_tiles",
    "bloodcell.provenance.data_report",
    "bloodcell.provenance.export",
    "bloodcell.provenance.lineage",
    "bloodcell.train.commands",
    "bloodcell.train.anchor_fit",
    "bloodcell.model.quantize_command",
    "bloodcell.evaluate.commands",
    "bloodcell.detect.commands",
    "bloodcell.evaluate.on_annotated_images",
    "bloodcell.common.params",
)
"""The modules that define the subcommands, in --help order. Each has ``add_parser(sub)``,
which adds its subcommand(s) and sets ``main`` (a function of the parsed arguments) as the
parser default; none imports TensorFlow before its ``main`` runs."""


def build_parser() -> argparse.ArgumentParser:
    """The ``bloodcell`` parser with every module's subcommands registered."""
    parser = _Parser(prog="bloodcell", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bloodcell {__version__}")
    parser.add_argument("--log", type=Path, help="also write the log to this file")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


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
        args.main(args)
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

