"""The detector's card inside its .keras file: written by training, read by detection."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from bloodcell.common.errors import UserError
from bloodcell.common.hyperparams import ORIGINAL_ANCHORS
from bloodcell.model import card as model_card

ANCHORS = ((2.5, 2.5), (5.0, 3.0))


@pytest.fixture(scope="module")
def carded(tmp_path_factory) -> Path:
    """An untrained detector saved with a card, as train-detector saves it."""
    from bloodcell.model.network import detector
    from bloodcell.train.loop import save_model

    folder = tmp_path_factory.mktemp("card")
    shard = folder / "train-0"
    shard.mkdir()
    (shard / "objects.parquet").write_bytes(b"table")
    (shard / "images.tfrecord").write_bytes(b"")
    card = model_card.make_card(ANCHORS, {"nms_iou": 0.45, "map_score_threshold": 0.01}, 34.0,
                                ["epochs=2", "seed=1"], [shard], None)
    path = folder / "detector.keras"
    save_model(detector(), path, card)
    return path


def test_the_card_travels_inside_the_keras_file(carded):
    from bloodcell.model.inference import load_detector

    card = model_card.read_card(carded)
    assert card["anchors"] == [[2.5, 2.5], [5.0, 3.0]] and card["tile_px"] == 224
    assert card["classes"][9] == "_" and card["rbc_diameter_px"] == 34.0
    lineage = card["training"]["inputs"][0]
    assert lineage["records"] == 0 and len(lineage["objects_sha256"]) == 64
    assert len(card["training"]["args_sha256"]) == 64
    assert load_detector(carded).output_shape[1:] == (14, 14, 6, 15)


def test_anchors_come_from_the_card_and_a_different_value_is_refused(carded):
    assert model_card.model_anchors(carded, None, ORIGINAL_ANCHORS) == ANCHORS
    assert model_card.model_anchors(carded, ANCHORS, ORIGINAL_ANCHORS) == ANCHORS
    with pytest.raises(UserError, match="differs from the anchors") as err:
        model_card.model_anchors(carded, ORIGINAL_ANCHORS, ORIGINAL_ANCHORS)
    assert "\n" not in str(err.value) and str(carded) in str(err.value)


def test_a_model_without_a_card_keeps_the_command_line(tmp_path):
    path = tmp_path / "old.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
    assert model_card.read_card(path) is None
    assert model_card.model_anchors(path, None, ORIGINAL_ANCHORS) == ORIGINAL_ANCHORS
    assert model_card.model_anchors(path, ANCHORS, ORIGINAL_ANCHORS) == ANCHORS
    assert model_card.model_rbc_diameter(path, 34.0) == 34.0


def test_the_saved_file_is_byte_stable(carded, tmp_path):
    from bloodcell.model.network import detector
    from bloodcell.train.loop import save_model

    card = model_card.read_card(carded)
    net = detector()
    a, b = tmp_path / "a.keras", tmp_path / "b.keras"
    save_model(net, a, card)
    save_model(net, b, card)
    assert a.read_bytes() == b.read_bytes()
