"""The split stage: every sample to train, valid or test, per source and class, seeded.

Within each (source, class) group the samples are ranked by SHA-256 of (seed, sample id); the
first round(n * test) go to test, the next round(n * valid) to valid, the rest to train (with
at least one sample in each non-zero split once a group has three). The rank of a sample does
not depend on the other samples, so adding files to a database moves few samples between
splits, and the result never depends on file order or worker count.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from bloodcell.common.atomic import atomic_dir
from bloodcell.common.cli_args import non_negative_int, param_option, share
from bloodcell.common.errors import UserError
from bloodcell.dataset.samples import PACK_NAME, read_pack

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")
SPLIT_NAME = "split.csv"
SUMMARY_NAME = "summary.csv"


@dataclass(frozen=True)
class SplitConfig:
    """Shares of each (source, class) group per split (they add up to 1) and the seed."""

    seed: int
    train: float
    valid: float
    test: float

    def check(self) -> None:
        """UserError unless the shares are in [0, 1] and add up to 1."""
        shares = (self.train, self.valid, self.test)
        if any(s < 0 or s > 1 for s in shares) or abs(sum(shares) - 1) > 1e-6:
            raise UserError(f"params.yaml: split shares {shares} must lie in [0, 1] and add "
                            "up to 1; fix split.train, split.valid and split.test")


def rank_key(seed: int, sample_id: str) -> str:
    """The sample's position key within its group (hex digest; same seed, same order)."""
    return hashlib.sha256(f"{seed}\x00{sample_id}".encode()).hexdigest()


def split_sizes(n: int, cfg: SplitConfig) -> tuple[int, int, int]:
    """(train, valid, test) sizes for a group of n samples."""
    n_test = round(n * cfg.test)
    n_valid = round(n * cfg.valid)
    if n >= 3:
        n_test = max(n_test, 1 if cfg.test > 0 else 0)
        n_valid = max(n_valid, 1 if cfg.valid > 0 else 0)
    n_test = min(n_test, n)
    n_valid = min(n_valid, n - n_test)
    return n - n_valid - n_test, n_valid, n_test


def assign(ids: list[str], cfg: SplitConfig) -> dict[str, str]:
    """Split name per sample id for one (source, class) group."""
    ranked = sorted(ids, key=lambda i: rank_key(cfg.seed, i))
    _, n_valid, n_test = split_sizes(len(ranked), cfg)
    out = {i: "test" for i in ranked[:n_test]}
    out.update({i: "valid" for i in ranked[n_test : n_test + n_valid]})
    out.update({i: "train" for i in ranked[n_test + n_valid :]})
    return out


def read_samples(pack_dirs: list[Path]) -> list[tuple[str, str, str]]:
    """(sample_id, source, class_name) of every sample in the given extract folders."""
    rows = []
    for d in pack_dirs:
        pack = d / PACK_NAME
        if not pack.is_file():
            raise UserError(f"{pack}: sample pack not found; run the extract stage first")
        t = read_pack(pack, columns=["sample_id", "source", "class_name"]).to_pydict()
        rows.extend(zip(t["sample_id"], t["source"], t["class_name"]))
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        raise UserError("split: the same sample id appears in two packs; give each extract "
                        "stage its own database")
    return sorted(rows)


def run(pack_dirs: list[Path], outdir: Path, cfg: SplitConfig) -> None:
    """Write OUTDIR/split.csv (sample_id, source, class_name, split) and summary.csv."""
    cfg.check()
    rows = read_samples(pack_dirs)
    groups: dict[tuple[str, str], list[str]] = {}
    for sample_id, source, class_name in rows:
        groups.setdefault((source, class_name), []).append(sample_id)
    split_of: dict[str, str] = {}
    for ids in groups.values():
        split_of.update(assign(ids, cfg))
    with atomic_dir(outdir, "split", pack_dirs) as tmp:
        with open(tmp / SPLIT_NAME, "w", newline="") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(["sample_id", "source", "class_name", "split"])
            out.writerows((i, s, c, split_of[i]) for i, s, c in rows)
        with open(tmp / SUMMARY_NAME, "w", newline="") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(["source", "class_name", *SPLITS])
            for (source, class_name), ids in sorted(groups.items()):
                counts = [sum(split_of[i] == s for i in ids) for s in SPLITS]
                out.writerow([source, class_name, *counts])
                log.info("%-7s %-12s train %5d valid %4d test %4d", source, class_name, *counts)


def add_parser(sub) -> None:
    """``bloodcell split``."""
    p = sub.add_parser("split", help="assign samples to train/valid/test",
                       description="Split every source and class's samples 80/10/10 (or as "
                       "given) by sample; write OUTDIR/split.csv and summary.csv.")
    p.add_argument("extracts", type=Path, nargs="+", help="extract stage output folders")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=non_negative_int, required=True)
    param_option(p, "--train", key="split.train", type=share)
    param_option(p, "--valid", key="split.valid", type=share)
    param_option(p, "--test", key="split.test", type=share)
    p.set_defaults(main=main)


def main(a) -> None:
    run(a.extracts, a.out, SplitConfig(a.seed, a.train, a.valid, a.test))
