"""Run the demo preset (the README's first command) end to end and print its wall time.

Usage: python benchmarks/demo_preset.py [--workdir DIR] [--cores 2] [--preset demo]
       python benchmarks/demo_preset.py --against 9a39853 [--workdir DIR]
       python benchmarks/demo_preset.py --report-only --workdir DIR
       python benchmarks/demo_preset.py --workdir DIR --set model.head=passthrough ...

Copies the pipeline into WORKDIR with config/params-PRESET.yaml as its params.yaml, times
`snakemake --cores N` from nothing (the demo databases are rendered by the run itself), and
prints the wall time, each job's time (Snakemake benchmark files) and the synthetic test split's
and slides' figures. ``--against REV`` first runs the same preset as git revision REV had it,
with REV's own package (``git archive`` into WORKDIR/REV, PYTHONPATH), then the working tree's
in WORKDIR/now, one after the other on the same machine, and prints the ratio of the two wall
times (issue 16: the demo preset in at most half the time of 9a39853's, the preset it was
filed against). ``--set KEY=VALUE`` (dotted key, YAML value; repeatable) changes the preset's
params for the working tree's run, e.g. a longer detector training. ``--report-only`` prints the
figures of an earlier run in WORKDIR.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import yaml
from public_preset import run_and_report
from scratch import copy_pipeline, export_revision


def use_preset(root: Path, preset: str) -> None:
    shutil.copy(root / "config" / f"params-{preset}.yaml", root / "params.yaml")


def with_params(params: dict, pairs: list[str]) -> dict:
    """``params`` with KEY=VALUE pairs (dotted keys, YAML values) set; an unknown key or a pair
    without ``=`` stops the benchmark with one line."""
    for pair in pairs:
        key, eq, value = pair.partition("=")
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not eq or not isinstance(node, dict) or leaf not in node:
            raise SystemExit(f"--set {pair}: not KEY=VALUE with a KEY of params.yaml")
        node[leaf] = yaml.safe_load(value)
    return params


def set_params(root: Path, pairs: list[str]) -> None:
    """Write KEY=VALUE pairs into root/params.yaml (its comments are dropped; the run validates
    it against the schema)."""
    path = root / "params.yaml"
    params = with_params(yaml.safe_load(path.read_text()), pairs)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    for pair in pairs:
        print(f"  --set {pair}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bloodcell-bench-demo"))
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--against", metavar="REV",
                    help="first run the preset of this git revision, then compare wall times")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a param of the working tree's run (dotted key, YAML value)")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args()
    project = Path(__file__).resolve().parent.parent
    with_params(yaml.safe_load((project / "config" / f"params-{a.preset}.yaml").read_text()),
                a.set)  # a typo stops here, not after the --against run
    if not a.report_only and a.workdir.exists():
        raise SystemExit(f"{a.workdir} exists: pass a new --workdir (runs start from nothing)")
    if a.report_only:
        run_and_report(a.workdir, a.cores, a.preset)
        return
    now = a.workdir
    if a.against:
        old, now = a.workdir / a.against, a.workdir / "now"

        def prepare_old() -> None:
            export_revision(a.against, old)
            use_preset(old, a.preset)

        env = {**os.environ, "PYTHONPATH": str(old)}
        print(f"{a.preset} preset at {a.against}:")
        before = run_and_report(old, a.cores, a.preset, prepare_old, env)
        print(f"{a.preset} preset now:")

    def prepare() -> None:
        copy_pipeline(now)
        use_preset(now, a.preset)
        set_params(now, a.set)

    after = run_and_report(now, a.cores, a.preset, prepare)
    if a.against:
        print(f"now / {a.against}: {after / before:.3f} of the wall time "
              f"({after:.0f} s against {before:.0f} s)")


if __name__ == "__main__":
    main()
