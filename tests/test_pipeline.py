"""The whole dataset DAG through the real tools: `snakemake --cores 2` and `dvc repro` on the
tiny preset, each in its own temporary copy of the project. Both must give the same bytes."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import PROJECT, project_copy, sh

pytestmark = pytest.mark.slow
OUTPUTS = ["data/extract/lisc", "data/extract/iumc", "data/extract/mamic",
           "data/extract/kaggle", "data/split", "data/backgrounds/train", "data/backgrounds/valid",
           "data/backgrounds/test", "data/synth/train-0", "data/synth/train-1",
           "data/synth/valid-0", "data/synth/test-0", "data/slides", "models", "metrics",
           "plots", "reports"]
"""Every output, the trained models and the metrics included: training is deterministic for a
given thread count (both tools run it with 2 threads here), see README "Determinism"."""


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under the pipeline outputs, keyed by relative path."""
    out = {}
    for rel in OUTPUTS:
        for f in sorted((root / rel).rglob("*")) if (root / rel).is_dir() else [root / rel]:
            if f.is_file() and f.name != ".snakemake_timestamp":  # Snakemake's own marker
                out[f.relative_to(root).as_posix()] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def dvc_run(tmp_path_factory) -> Path:
    root = project_copy(tmp_path_factory.mktemp("dvc"))
    sh(["dvc", "init", "--no-scm", "-q"], root)
    shutil.copy(PROJECT / ".dvcignore", root / ".dvcignore")
    sh(["dvc", "repro"], root)
    return root


def test_snakemake_makes_every_stage_and_then_has_nothing_to_do(snakemake_run):
    for rel in OUTPUTS:
        assert any((snakemake_run / rel).iterdir()), rel
    assert (snakemake_run / "logs" / "extract_kaggle.log").is_file()
    dry = sh(["snakemake", "-n", "--cores", "2"], snakemake_run)
    assert "Nothing to be done" in dry


def test_the_report_gathers_metrics_figures_and_contact_sheets(snakemake_run):
    sh(["snakemake", "--report", "report.html"], snakemake_run)
    html = (snakemake_run / "report.html").read_text(errors="replace")
    for name in ("training_curves.png", "pr_curves.png", "confusion.png", "metrics.html",
                 "contact_sheet.png", "slide_000.png"):
        assert name in html, name
    metrics = json.loads((snakemake_run / "metrics" / "evaluate.json").read_text())
    assert 0 <= metrics["coco"]["map50"] <= 1
    slides = json.loads((snakemake_run / "metrics" / "evaluate_slides.json").read_text())
    assert set(slides) >= {"first_pass_only", "second_pass"}


REPORT_SECTIONS = ("Sources and lineage", "Backgrounds", "Synthetic data", "Whole slides",
                   "Evaluation")
REPORT_FILES = ("qc.html", "samples_lisc.png", "samples_kaggle.png", "lineage.html",
                "contact_sheet.png", "training_curves.png", "pr_curves.png", "confusion.png",
                "metrics.html", "slide_000.png", "slide_000_first_pass_only.png")


def test_the_report_shows_every_section_and_image_in_a_real_browser(snakemake_run, tmp_path):
    """Headless Chromium (no network) opens report.html, every section is in its menu, and
    every result, shown as its view button shows it, loads (naturalWidth > 0, also the images
    inside HTML results); screenshots of what it showed are not blank."""
    import cv2
    from report_browser import browser_paths, view_report

    paths = browser_paths()
    if paths is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run "
                    "installs them: apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium is in the test extra: pip install -e "
                        "'.[test]'")
    report = snakemake_run / "report.html"
    if not report.is_file():
        sh(["snakemake", "--report", "report.html"], snakemake_run)
    view = view_report(report, tmp_path, paths)
    for section in REPORT_SECTIONS:
        assert section in view.categories and section in view.menu_text, section
    assert set(REPORT_FILES) <= {Path(p).name for p in view.results}
    for path, widths in view.results.items():
        assert all(w > 0 for w in widths), f"{path}: an image did not load ({widths})"
        assert widths or path.endswith(".html"), path
    lineage = next(p for p in view.results if p.endswith("lineage.html"))
    assert len(view.results[lineage]) > 3  # 3 images + a cut cell per object
    assert view.page_text[lineage].count("sha256") >= 3
    assert "Healthy RBC" in view.page_text[lineage] and "raw file" in view.page_text[lineage]
    qc = next(p for p in view.results if p.endswith("qc.html"))
    assert all(source in view.page_text[qc] for source in ("lisc", "iumc", "mamic", "kaggle"))
    for shot in sorted(tmp_path.glob("*.png")):
        pixels = cv2.imread(str(shot))
        assert pixels is not None and pixels.std() > 5, shot.name


def test_split_covers_every_sample_of_every_source_once(snakemake_run):
    with open(snakemake_run / "data/split/split.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [r["sample_id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert {r["source"] for r in rows} == {"lisc", "iumc", "mamic", "kaggle"}
    assert {r["split"] for r in rows} == {"train", "valid", "test"}


def test_dvc_repro_records_the_stages_and_gives_the_same_bytes(dvc_run, snakemake_run):
    assert "up to date" in sh(["dvc", "status"], dvc_run).lower()
    lock = (dvc_run / "dvc.lock").read_text()
    for stage in ("demo_sources", "extract_lisc", "extract_iumc", "extract_mamic",
                  "extract_kaggle", "split", "backgrounds@train", "backgrounds@test",
                  "synth@train-0", "synth@valid-0", "synth@test-0", "slides"):
        assert f"  {stage}:" in lock
    assert digests(dvc_run) == digests(snakemake_run)


def test_after_snakemake_dvc_commit_records_the_lineage_without_rerunning(snakemake_run):
    shutil.copy(PROJECT / ".dvcignore", snakemake_run / ".dvcignore")
    sh(["dvc", "init", "--no-scm", "-q"], snakemake_run)
    before = digests(snakemake_run)
    sh(["dvc", "commit", "-f", "-q"], snakemake_run)
    assert "up to date" in sh(["dvc", "status"], snakemake_run).lower()
    assert digests(snakemake_run) == before


def test_a_param_change_reruns_exactly_the_stages_downstream(dvc_run):
    params = dvc_run / "params.yaml"
    params.write_text(params.read_text().replace("partial_share: 0.2", "partial_share: 0.35"))
    status = json.loads(sh(["dvc", "status", "--json"], dvc_run))
    assert sorted(status) == ["synth@test-0", "synth@train-0", "synth@train-1", "synth@valid-0"]
    log = sh(["dvc", "repro"], dvc_run)
    ran = sorted(re.findall(r"Running stage '([^']+)'", log))
    shards = ["test-0", "train-0", "train-1", "valid-0"]
    downstream = ["train_classifier", "train_detector", "evaluate", "evaluate_slides",
                  "data_report"]
    assert ran == sorted([f"synth@{s}" for s in shards] + [f"dataset_stats@{s}" for s in shards]
                         + downstream)  # not demo_sources, extract_*, split, backgrounds, slides
    assert "partial_wbc_share" in sh(["dvc", "metrics", "show"], dvc_run)
    assert "up to date" in sh(["dvc", "status"], dvc_run).lower()


def test_every_job_as_its_own_process_gives_the_same_bytes(tmp_path, snakemake_run):
    root = project_copy(tmp_path)
    shutil.copytree(PROJECT / "profiles", root / "profiles")
    sh(["snakemake", "--profile", "profiles/local-processes"], root)
    assert digests(root) == digests(snakemake_run)


def test_push_to_a_directory_remote_and_pull_into_a_fresh_copy(dvc_run, tmp_path):
    remote = tmp_path / "remote"
    sh(["dvc", "remote", "add", "-d", "store", str(remote)], dvc_run)
    sh(["dvc", "push", "-q"], dvc_run)
    (tmp_path / "fresh").mkdir()
    fresh = project_copy(tmp_path / "fresh")
    for rel in ("params.yaml", "dvc.lock", ".dvcignore"):
        shutil.copy(dvc_run / rel, fresh / rel)
    sh(["dvc", "init", "--no-scm", "-q"], fresh)
    shutil.copy(dvc_run / ".dvc" / "config", fresh / ".dvc" / "config")
    sh(["dvc", "pull", "-q"], fresh)
    assert "up to date" in sh(["dvc", "status"], fresh).lower()
    assert digests(fresh) == digests(dvc_run)
