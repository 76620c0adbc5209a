"""Command-line pieces several commands share: argument types, option groups, and options whose
default is the params schema's (so no default is written twice).

Argument types raise argparse.ArgumentTypeError, which argparse turns into one line naming the
option, exit code 2. Nothing here imports TensorFlow: building the parser stays light.
"""

from __future__ import annotations

import argparse
import math

from bloodcell.common.errors import UserError
from bloodcell.common.param_defaults import param_default


def param_option(p: argparse.ArgumentParser, *flags: str, key: str, help: str = "",
                 **kwargs) -> argparse.Action:
    """Add an option whose default is params key ``key``'s schema default (the default
    preset's value); the help names the key and the default. The action's ``param_key`` says
    where the default came from (tests check every default has such a home)."""
    default = param_default(key)
    shown = str(default).replace("%", "%%")
    where = f"params.yaml {key} (default {shown})"
    action = p.add_argument(*flags, default=default, help=f"{help}; {where}" if help else where,
                            **kwargs)
    action.param_key = key
    return action


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


def check_range(option: str, pair: list[int]) -> None:
    """UserError unless a MIN MAX option pair has MIN <= MAX."""
    if pair[0] > pair[1]:
        raise UserError(f"{option} {pair[0]} {pair[1]}: MIN exceeds MAX; give MIN MAX with MIN "
                        "<= MAX (see params.yaml)")


def add_sample_args(p: argparse.ArgumentParser, db: str) -> None:
    """Options every extract-<db> stage takes: --scale, and --pad and --min-area with the
    defaults of params.yaml extract.<db>."""
    p.add_argument("--scale", type=positive_float, required=True,
                   help="resize factor from native pixels to the common 40x scale")
    param_option(p, "--pad", key=f"extract.{db}.pad", type=non_negative_int,
                 help="pixels of context kept around each cell's mask box")
    param_option(p, "--min-area", key=f"extract.{db}.min_area", type=positive_int,
                 help="smallest cell mask in native px")


def typed(name: str, conv):
    def parse(text: str):
        try:
            return conv(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"bad {name} {text!r}: {err}") from None

    return parse
