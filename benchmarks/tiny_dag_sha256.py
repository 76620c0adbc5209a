"""Run the tiny preset's whole DAG at one or more git revisions and compare every output's bytes.

For refactors that must not change behaviour: each revision is exported with ``git archive``
into a temporary folder, made the tiny preset (config/params-tiny.yaml as params.yaml) and run
with ``snakemake --cores 2`` using that revision's own package (PYTHONPATH), then the SHA-256 of
every file under data/, models/, metrics/, plots/, reports/ and raw/ is taken. With two or more
revisions it prints the files whose bytes differ from the first one's (none: "same bytes").

    python benchmarks/tiny_dag_sha256.py 9a39853 HEAD        # before and after a refactor
    python benchmarks/tiny_dag_sha256.py HEAD --out sums.txt  # one revision's checksums

Takes about 80 s per revision on 2 cores. Training's bytes depend on the thread count, so every
revision runs with the same --cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scratch import export_revision

OUTPUT_DIRS = ("data", "models", "metrics", "plots", "reports", "raw")


def export(rev: str, dst: Path) -> None:
    """The tree of ``rev`` in ``dst``, with the tiny preset as params.yaml."""
    export_revision(rev, dst)
    (dst / "params.yaml").write_bytes((dst / "config" / "params-tiny.yaml").read_bytes())


def checksums(root: Path) -> dict[str, str]:
    """SHA-256 of every output file, by path relative to ``root``."""
    sums = {}
    for top in OUTPUT_DIRS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                sums[path.relative_to(root).as_posix()] = hashlib.sha256(
                    path.read_bytes()).hexdigest()
    return sums


def run(rev: str, work: Path, cores: int) -> dict[str, str]:
    root = work / rev.replace("/", "_")
    root.mkdir()
    export(rev, root)
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    proc = subprocess.run(["snakemake", "--cores", str(cores)], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{rev}: snakemake failed\n{proc.stderr[-3000:]}")
    sums = checksums(root)
    print(f"{rev}: {len(sums)} output files in {time.perf_counter() - start:.0f} s")
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revs", nargs="+", help="git revisions (HEAD, a hash, a branch)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the last revision's checksums here")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tiny-sha-") as tmp:
        results = [run(rev, Path(tmp), a.cores) for rev in a.revs]
    first = results[0]
    for rev, sums in zip(a.revs[1:], results[1:]):
        differ = sorted(k for k in first.keys() | sums.keys() if first.get(k) != sums.get(k))
        print(f"{a.revs[0]} vs {rev}: " + ("same bytes" if not differ else
                                           f"{len(differ)} files differ:\n  " +
                                           "\n  ".join(differ)))
    if a.out:
        a.out.write_text("".join(f"{v}  {k}\n" for k, v in sorted(results[-1].items())))


if __name__ == "__main__":
    main()
