"""Kill tests: every job is killed with SIGKILL at seeded random moments, then rerun.

For each job: one uninterrupted run in its own folder gives the reference bytes and the
duration T; then, in a second folder with the same inputs, the job is started in its own
process group and killed (``kill -9`` of the group) at seeded random moments (fractions
between 5 % and 90 % of the job's own work, after its start-up), and:

- (c) after every kill, each output is absent or the previous complete output (a folder
  output carries its ``.bloodcell-output`` marker and holds exactly the reference bytes): no
  half output ever looks whole; leftover ``.NAME.tmp-*`` siblings are allowed here;
- (a) after each round of kills, the same command, run again, exits 0;
- (b) and leaves the whole folder (inputs and outputs, hidden files included, log files and
  run timings excepted) byte for byte the uninterrupted run's: no temporary sibling and no
  training state is left behind.

The first kill of a job finds no output yet; the later ones kill a run that is replacing its
own previous output, and one that is cleaning up after the kill before it.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from bloodcell.common.atomic import MARKER
from conftest import make_kaggle

SEED = 13
KILLS = 3
"""Kill moments per job (training: TRAIN_KILLS, it is the slowest)."""
TRAIN_KILLS = 2
LOW, HIGH = 0.05, 0.90


def moments(job: str, n: int, ranges: list[tuple[float, float]] | None = None) -> list[float]:
    """``n`` fractions in [LOW, HIGH] (or one in each of ``ranges``), seeded per job (stable
    whatever tests run before)."""
    rng = random.Random(f"{SEED}-{job}")
    return [rng.uniform(lo, hi) for lo, hi in (ranges or [(LOW, HIGH)] * n)]


_STARTUP: list[float] = []


def startup() -> float:
    """Seconds `python -m bloodcell --version` takes (Python and the package's imports,
    TensorFlow's included), measured once: the part of every job before it does anything."""
    if not _STARTUP:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bloodcell", "--version"], check=True,
                       capture_output=True, timeout=600)
        _STARTUP.append(time.perf_counter() - t0)
    return _STARTUP[0]


def start(args: list, cwd: Path) -> subprocess.Popen:
    """``python -m bloodcell ARGS`` in ``cwd``, in its own process group, output discarded."""
    return subprocess.Popen([sys.executable, "-m", "bloodcell", *map(str, args)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def run_ok(args: list, cwd: Path) -> tuple[str, float]:
    """Run the job to completion; (its log, seconds). Fails unless it exits 0."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bloodcell", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr, time.perf_counter() - t0


def kill_at(args: list, cwd: Path, seconds: float) -> None:
    """Start the job and SIGKILL its whole process group ``seconds`` later."""
    proc = start(args, cwd)
    try:
        proc.wait(timeout=seconds)  # finished early: the kill finds nothing to kill
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def digest(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (hidden ones included) and every folder, by path
    relative to ``root``; log files and the relative paths in ``ignore`` left out."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.name.endswith(".log") or rel in ignore:
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def part(tree: dict[str, str], output: str) -> dict[str, str]:
    """The entries of ``tree`` at or under the relative path ``output``."""
    return {k: v for k, v in tree.items() if k == output or k.startswith(output + "/")}


def assert_absent_or_whole(work: Path, outputs: list[str], ref: dict[str, str],
                           ignore: tuple[str, ...]) -> None:
    """(c): each output is absent, or exactly the complete reference output."""
    now = digest(work, ignore)
    for out in outputs:
        path = work / out
        if not path.exists():
            continue
        if path.is_dir():
            assert (path / MARKER).is_file(), f"{out}: a folder without its marker after a kill"
        assert part(now, out) == part(ref, out), f"{out}: a partial output after a kill"


def tmp_siblings(work: Path, outputs: list[str]) -> list[str]:
    found = []
    for out in outputs:
        parent = (work / out).parent
        if parent.is_dir():
            found += [p.name for p in parent.iterdir()
                      if p.name.startswith(f".{Path(out).name}.tmp-")]
    return found


def kill_and_rerun(job: str, tmp: Path, setup: Callable[[Path], None], args: list,
                   outputs: list[str], n: int = KILLS, ignore: tuple[str, ...] = (),
                   ranges: list[tuple[float, float]] | None = None,
                   after_kill: Callable[[Path], object] | None = None,
                   after_rerun: Callable[[str, object], None] | None = None) -> None:
    """The whole kill test of one job (see the module's docstring).

    ``setup(folder)`` writes the inputs; ``args`` are relative to that folder; ``outputs``
    are the job's outputs (relative paths); ``ignore``: relative paths whose bytes are not
    compared (run timings). ``after_kill(work)``'s value, after the last kill before a rerun,
    is passed to ``after_rerun(log, value)``.

    A drawn fraction f of the job's duration T is placed in the part after the start-up S
    (imports, the same for every job): the kill comes at S + f (T - S) seconds, inside the
    job's own work, never wasted on a job still importing.

    The kills come in rounds, each followed by one rerun to completion (to save CPU): with
    three kills, the first alone (no output yet), then two in a row (the second kills a run
    replacing its own output, the third one cleaning up after the second); with fewer, all
    in one round.
    """
    base, work = tmp / "base", tmp / "work"
    for folder in (base, work):
        folder.mkdir()
        setup(folder)
    _, duration = run_ok(args, base)
    ref = digest(base, ignore)
    written = digest(base)
    for out in outputs:
        assert part(written, out), f"{out}: not written by the uninterrupted run"
    lead = min(startup(), 0.5 * duration)
    drawn = moments(job, n, ranges)
    rounds = [drawn[:1], drawn[1:]] if n > 2 else [drawn]
    for fractions in rounds:
        for fraction in fractions:
            kill_at(args, work, lead + fraction * (duration - lead))
            assert_absent_or_whole(work, outputs, ref, ignore)
            seen = after_kill(work) if after_kill else None
            print(f"{job}: killed at {fraction:.0%} of {duration - lead:.1f} s after "
                  f"{lead:.1f} s; outputs present: "
                  f"{[o for o in outputs if (work / o).exists()]}; temporaries: "
                  f"{tmp_siblings(work, outputs)}; after_kill: {seen}")
        log, _ = run_ok(args, work)
        if after_rerun:
            after_rerun(log, seen)
        assert digest(work, ignore) == ref, f"{job}: the rerun differs after kills at " \
            f"{', '.join(f'{f:.0%}' for f in fractions)} of {duration:.1f} s after " \
            f"{lead:.1f} s"
        assert tmp_siblings(work, outputs) == []


# ------------------------------------------------------------------ data stages


DEMO = ["--seed", "1", "--lisc-per-class", "1", "--lisc-mixt", "0", "--iumc-per-class", "1",
        "--mamic-fields", "1", "--kaggle-per-class", "2"]


def test_demo_sources(tmp_path):
    kill_and_rerun("demo-sources", tmp_path, lambda d: None, ["demo-sources", "demo", *DEMO],
                   ["demo"])


def test_extract_kaggle(tmp_path):
    kill_and_rerun("extract-kaggle", tmp_path, lambda d: make_kaggle(d / "kaggle", 20),
                   ["-q", "extract-kaggle", "kaggle", "ex/kaggle", "--scale", "0.3"],
                   ["ex/kaggle"])


@pytest.fixture(scope="module")
def synth_inputs(tmp_path_factory) -> Path:
    """kaggle/ -> ex/kaggle -> split/ -> bg/train: the inputs of one synth shard."""
    from bloodcell.cli import main

    root = tmp_path_factory.mktemp("synth-inputs")
    make_kaggle(root / "kaggle")
    for args in (["extract-kaggle", root / "kaggle", root / "ex/kaggle", "--scale", "0.3"],
                 ["split", root / "ex/kaggle", "--out", root / "split", "--seed", "1",
                  "--train", "1", "--valid", "0", "--test", "0"],
                 ["backgrounds", "train", "--split-table", root / "split/split.csv",
                  "--extracts", root / "ex/kaggle", "--out", root / "bg/train", "--seed", "1",
                  "--per-kind", "1", "--size", "300", "--rbc-count", "5", "10"]):
        assert main(["-q", *map(str, args)]) == 0, args[0]
    return root


def test_synth_shard(tmp_path, synth_inputs):
    def setup(folder: Path) -> None:
        for name in ("ex", "split", "bg"):
            shutil.copytree(synth_inputs / name, folder / name)

    kill_and_rerun("synth", tmp_path, setup, [
        "-q", "synth", "train-0", "--split-table", "split/split.csv", "--extracts",
        "ex/kaggle", "--backgrounds", "bg/train", "--out", "synth/train-0", "--seed", "1",
        "--images", "6", "--mix", "1", "0", "0", "0", "--bg-size", "300"], ["synth/train-0"])


def test_export(tmp_path):
    from test_export import make_data_root

    kill_and_rerun("export", tmp_path, make_data_root,
                   ["-q", "export", "--format", "coco", "train", "coco", "--synth",
                    "data/synth"], ["coco"])


# ------------------------------------------------------------------ training


def test_training(tmp_path):
    """Two kills in a row (training is the slowest job): the second may kill a resumed run;
    a rerun after a kill that came after a finished epoch resumes from it, and the final
    .keras and history are the uninterrupted run's bytes (the metrics hold run timings)."""
    from test_safety import write_shard

    def setup(folder: Path) -> None:
        write_shard(folder / "data" / "synth" / "train-0", "train", 20, 1)
        write_shard(folder / "data" / "synth" / "valid-0", "valid", 10, 2)

    def last_epoch(work: Path) -> int | None:
        done = sorted(work.glob(".bloodcell-state/*/epoch-*/state.json"))
        return int(done[-1].parent.name.split("-")[1]) if done else None

    def check_log(log: str, epoch: int | None) -> None:
        if epoch is not None:
            assert f"resuming classifier after epoch {epoch} " in log, log[-3000:]
        else:
            assert "resuming" not in log, log[-3000:]

    args = ["train-classifier", "--shards", "data/synth", "--model", "models/c.keras",
            "--history", "plots/c.csv", "--metrics", "metrics/c.json", "--seed", "7",
            "--epochs", "2", "--batch", "10", "--schedule", "1:1e-3,2:1e-4"]
    kill_and_rerun("train-classifier", tmp_path, setup, args,
                   ["models/c.keras", "plots/c.csv", "metrics/c.json"], n=TRAIN_KILLS,
                   ranges=[(LOW, 0.45), (0.55, HIGH)],
                   ignore=("metrics/c.json",), after_kill=last_epoch, after_rerun=check_log)
    assert not (tmp_path / "work" / ".bloodcell-state").exists()


# ------------------------------------------------------------------ model on images


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    """A randomly initialised detector saved as .keras, in a fresh process."""
    path = tmp_path_factory.mktemp("model") / "detector.keras"
    code = ("import sys; from bloodcell.common.tf_threads import set_tf_threads; set_tf_threads(); "
            "from bloodcell.model import network; network.detector().save(sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=600)
    return path


def test_evaluate_images(tmp_path, untrained_model):
    from test_evaluate_images import write_voc

    kill_and_rerun("evaluate-images", tmp_path, lambda d: write_voc(d / "voc", n=1), [
        "-q", "evaluate-images", "voc/JPEGImages", "--labels", "voc/Annotations", "--format",
        "voc", "--class-map", "bccd", "--model", untrained_model, "--rbc-diameter", "34",
        "--metrics", "out/metrics.json", "--figures", "out/figures"],
        ["out/metrics.json", "out/figures"])


def test_detect_over_a_folder(tmp_path, untrained_model):
    def setup(folder: Path) -> None:
        rng = np.random.default_rng(0)
        (folder / "smears").mkdir()
        for i, (h, w) in enumerate([(120, 150), (160, 140), (130, 130)]):
            img = rng.integers(0, 255, (h, w, 3), np.uint8)
            assert cv2.imwrite(str(folder / "smears" / f"s{i}.png"), img)

    per_image = [f"out/s{i}{suffix}" for i in range(3)
                 for suffix in (".png", ".geojson", ".cells.csv")]
    kill_and_rerun("detect", tmp_path, setup, [
        "-q", "detect", "smears", "--out", "out", "--model", untrained_model,
        "--rbc-diameter", "40", "--score-threshold", "0.01"],
        [*per_image, "out/summary.csv", "out/detections.json"])


def test_evaluate_on_shards(tmp_path, untrained_model):
    from test_safety import write_shard

    def setup(folder: Path) -> None:
        write_shard(folder / "data" / "synth" / "test-0", "test", 6, 3)
        (folder / "plots").mkdir()
        (folder / "plots" / "c.csv").write_text(
            "epoch,lr,train_loss,valid_loss,valid_accuracy\n1,0.001,0.5,0.4,0.3\n")
        (folder / "plots" / "d.csv").write_text(
            "epoch,lr,train_loss,valid_loss,valid_map50\n1,0.001,50,40,0.1\n")

    kill_and_rerun("evaluate", tmp_path, setup, [
        "-q", "evaluate", "--shards", "data/synth", "--model", untrained_model,
        "--histories", "plots/c.csv", "plots/d.csv", "--anchors",
        "3.1x3.1,6.125x3.1,3.1x6.125,6.125x6.125,5.32x5.32,2.7x2.7",
        "--metrics", "out/evaluate.json", "--plots", "out/plots", "--figures", "out/figures"],
        ["out/evaluate.json", "out/plots", "out/figures"])
