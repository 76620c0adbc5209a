"""Lineage of a synthetic image: image -> background -> sample -> raw file -> split."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from test_export import SAMPLES, SPLIT, make_data_root, objects_of, sha

from bloodcell.common.errors import UserError
from bloodcell.dataset.shards import TFRECORD_NAME
from bloodcell.provenance.lineage import add_parser, format_lineage, lineage


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data_root(tmp_path)


def test_one_entry_per_object_with_raw_file_sha_and_split(data):
    rows = lineage("train-1-000000", data)
    want = objects_of(1, 0, (224, 224))
    assert len(rows) == len(want) == 4
    for r, (c, sid, x, y, w, h) in zip(rows, want):
        source, _, raw, split = SAMPLES[sid]
        assert (r["class_idx"], r["sample_id"], r["x"], r["y"], r["w"], r["h"]) == (
            c, sid, x, y, w, h)
        assert (r["source"], r["raw_path"], r["raw_sha256"]) == (source, raw, sha(raw))
        assert r["sample_split"] == split
        assert (r["background_id"], r["window_x"], r["window_y"]) == ("train-nn-0000", 100, 201)
        assert r["image_id"] == "train-1-000000" and r["split"] == SPLIT
    assert [r["obj"] for r in rows] == [0, 1, 2, 3]


def test_format_shows_the_chain_per_object_and_flags_a_split_leak(data):
    rows = lineage("train-0-000000", data)
    text = format_lineage(rows)
    blocks = text.split("\n\n")
    assert len(blocks) == len(rows) == 5
    first = blocks[0]
    assert first.startswith("train-0-000000  object 0: Neutrophil (class 2)")
    assert "box x=30 y=40 w=61 h=58" in first and "train-nn-0000" in first
    assert "lisc: Main Dataset/neut/1.bmp" in first and sha("Main Dataset/neut/1.bmp") in first
    assert "split       train" in first and "WARNING" not in first
    assert "not found" not in first  # the raw file was found: no "re-run" hint beside it
    assert "WARNING" in blocks[4] and "valid" in blocks[4] and "split leak" in blocks[4]


def test_reads_tables_only(data):
    """The TFRecords are not needed: lineage never decodes an image."""
    for p in (data / "synth").glob(f"*/{TFRECORD_NAME}"):
        p.unlink()
    assert len(lineage("train-0-000001", data)) == 4


def test_unpadded_index_is_accepted(data):
    assert [r["image_id"] for r in lineage("train-0-2", data)] == ["train-0-000002"] * 5


@pytest.mark.parametrize("bad", ["nonsense", "train-x-000001", "train-0-", "-0-000001",
                                 "train-0-abc"])
def test_malformed_id_names_the_expected_form(data, bad):
    with pytest.raises(UserError, match="expected SPLIT-SHARD-INDEX such as train-0-000123"):
        lineage(bad, data)


def test_unknown_image_or_shard_is_a_user_error(data):
    with pytest.raises(UserError, match=r"image train-0-000099 not found .* 3 images with "
                                        r"objects: train-0-000000 \.\. train-0-000002"):
        lineage("train-0-000099", data)
    with pytest.raises(UserError, match="no such shard .* run the synth stage first") as err:
        lineage("train-7-000000", data)
    assert "train-7/objects.parquet" in str(err.value) and "\n" not in str(err.value)


def test_missing_split_table_and_pack_are_reported_not_fatal(data):
    (data / "split" / "split.csv").unlink()
    (data / "extract" / "kaggle" / "samples.parquet").unlink()
    rows = lineage("train-0-000000", data)
    assert rows[0]["raw_sha256"] == sha("Main Dataset/neut/1.bmp")
    assert rows[3]["raw_sha256"] is None and rows[3]["sample_split"] is None
    text = format_lineage(rows, data)
    assert "not found in" in text and "re-run the extract stage" in text
    assert "split/split.csv" in text


def test_lineage_subcommand(data, capsys):
    parser = argparse.ArgumentParser(prog="bloodcell")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["lineage", "train-1-000001", "--data", str(data)])
    args.main(args)
    out = capsys.readouterr().out
    assert out.count("object ") == 5 and sha("images/f1.png") in out


def test_lineage_and_help_start_without_tensorflow(data):
    """The parser of every command, and lineage itself, import no TensorFlow (it costs
    seconds): checked in a fresh interpreter."""
    import subprocess
    import sys

    code = ("import sys\nfrom bloodcell.cli import main\n"
            f"main(['-q', 'lineage', 'train-1-000001', '--data', {str(data)!r}])\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False"
