"""Storage of the synthetic dataset: per shard one TFRecord of images and one parquet table.

Shards live in ``data/synth/<split>-<k>/`` (e.g. data/synth/train-0).

``SHARD/images.tfrecord`` holds one ``tf.train.Example`` per image, in image-id order:

- ``image/id``: bytes, e.g. ``train-0-000123`` (split, shard, index in the shard);
- ``image/encoded``: PNG bytes (decodes to RGB with tf.io, to BGR with OpenCV);
- ``image/width``, ``image/height``: int64, pixels;
- ``image/object/bbox/{xmin,ymin,xmax,ymax}``: float lists, pixels, top-left origin,
  xmax = x + w (exclusive);
- ``image/object/class/label``: int64 list, class indices (bloodcell.common.classes).

``SHARD/objects.parquet`` has one row per object (OBJECT_SCHEMA), in the same order as the
TFRecord's lists: pasted objects first (paste order), then background RBCs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

TFRECORD_NAME = "images.tfrecord"
OBJECTS_NAME = "objects.parquet"

OBJECT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("split", pa.string()),
        ("shard", pa.int16()),
        ("obj", pa.int16()),
        ("class_idx", pa.int8()),
        ("class_name", pa.string()),
        ("x", pa.int16()),
        ("y", pa.int16()),
        ("w", pa.int16()),
        ("h", pa.int16()),
        ("visible", pa.float32()),
        ("sample_id", pa.string()),
        ("background_id", pa.string()),
        ("window_x", pa.int16()),
        ("window_y", pa.int16()),
    ]
)
"""x, y, w, h: the object's box in the image (top-left, pixels, clipped to the image);
visible: share of the object's mask pixels visible in the image; window_x, window_y: the
image's top-left corner in its background (pixels)."""


@dataclass(frozen=True)
class ImageRecord:
    """One synthetic image: id, PNG bytes, size, boxes (n, 4) as x, y, w, h px, classes (n,)."""

    image_id: str
    png: bytes
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray


def image_id(split: str, shard: int, index: int) -> str:
    """The id of image ``index`` of a shard, e.g. ``train-0-000123``."""
    return f"{split}-{shard}-{index:06d}"


def parse_image_id(text: str) -> tuple[str, int, int]:
    """(split, shard, index) of an image id; ValueError if it is not of that form."""
    split, shard, index = text.rsplit("-", 2)
    return split, int(shard), int(index)


def encode_example(rec: ImageRecord) -> bytes:
    """Serialise one image as a tf.train.Example (see the module docstring)."""
    import tensorflow as tf

    b = np.asarray(rec.boxes, np.float32).reshape(-1, 4)

    def floats(v: np.ndarray) -> tf.train.Feature:
        return tf.train.Feature(float_list=tf.train.FloatList(value=v.tolist()))

    def ints(v) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))

    def raw(v: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    feats = {
        "image/id": raw(rec.image_id.encode()),
        "image/encoded": raw(rec.png),
        "image/width": ints([rec.width]),
        "image/height": ints([rec.height]),
        "image/object/bbox/xmin": floats(b[:, 0]),
        "image/object/bbox/ymin": floats(b[:, 1]),
        "image/object/bbox/xmax": floats(b[:, 0] + b[:, 2]),
        "image/object/bbox/ymax": floats(b[:, 1] + b[:, 3]),
        "image/object/class/label": ints(int(c) for c in rec.classes),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString(deterministic=True)  # map order fixed: same bytes


def decode_example(data: bytes) -> ImageRecord:
    """Parse one serialised example back into an ImageRecord (boxes as x, y, w, h px)."""
    import tensorflow as tf

    ex = tf.train.Example.FromString(data)
    f = ex.features.feature
    xmin = np.array(f["image/object/bbox/xmin"].float_list.value, np.float32)
    ymin = np.array(f["image/object/bbox/ymin"].float_list.value, np.float32)
    xmax = np.array(f["image/object/bbox/xmax"].float_list.value, np.float32)
    ymax = np.array(f["image/object/bbox/ymax"].float_list.value, np.float32)
    boxes = np.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=1)
    return ImageRecord(
        f["image/id"].bytes_list.value[0].decode(),
        f["image/encoded"].bytes_list.value[0],
        int(f["image/width"].int64_list.value[0]),
        int(f["image/height"].int64_list.value[0]),
        boxes,
        np.array(f["image/object/class/label"].int64_list.value, np.int64),
    )


SHEET_IMAGES = 12
"""Images a shard's contact sheet shows."""


def write_shard(folder: Path, items: Iterable[tuple[ImageRecord, list[tuple], np.ndarray]],
                schema: pa.Schema, show: Callable[[int], bool] = lambda i: True
                ) -> tuple[int, list[tuple], list[tuple[np.ndarray, list[tuple]]]]:
    """Write ``folder``/images.tfrecord and objects.parquet (rows of ``schema``) from (record,
    object rows, BGR image) items, in order. Returns the image count, all object rows and, for
    the contact sheet, (image, rows) of the first SHEET_IMAGES items whose index ``show``
    picks."""
    import pyarrow.parquet as pq
    import tensorflow as tf

    rows: list[tuple] = []
    shown: list[tuple[np.ndarray, list[tuple]]] = []
    count = 0
    with tf.io.TFRecordWriter(str(folder / TFRECORD_NAME)) as writer:
        for rec, img_rows, img in items:
            writer.write(encode_example(rec))
            rows.extend(img_rows)
            if show(count) and len(shown) < SHEET_IMAGES:
                shown.append((img, img_rows))
            count += 1
    columns = list(zip(*rows)) if rows else [[] for _ in schema.names]
    table = pa.table({n: list(c) for n, c in zip(schema.names, columns)}, schema=schema)
    pq.write_table(table, folder / OBJECTS_NAME, compression="zstd")
    return count, rows, shown


def read_records(path: Path) -> Iterator[ImageRecord]:
    """Every image of one TFRecord file, in file order; UserError naming the file when it is
    damaged (truncated, not a TFRecord, an example that does not parse)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    from bloodcell.common.errors import UserError

    try:
        for data in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            try:
                rec = decode_example(data)
            except (DecodeError, KeyError, IndexError, UnicodeDecodeError) as err:
                raise UserError(f"{path}: an example does not parse ({type(err).__name__}); "
                                "re-run the stage that wrote it") from None
            yield rec
    except tf.errors.OpError as err:
        reason = (err.message or type(err).__name__).splitlines()[0][:160]
        raise UserError(f"{path}: damaged TFRecord ({reason}); re-run the stage that wrote "
                        "it") from None


def shard_dirs(root: Path, split: str) -> list[Path]:
    """The shard folders ``root/<split>-<k>`` (e.g. data/synth/train-0) in shard order."""
    dirs = [p for p in root.glob(f"{split}-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(dirs, key=lambda p: int(p.name.split("-")[-1]))


def shard_key(key: str) -> tuple[str, int]:
    """(split, shard) of a shard key such as ``train-0``; ValueError otherwise."""
    split, _, shard = key.rpartition("-")
    if split not in ("train", "valid", "test") or not shard.isdigit():
        raise ValueError(f"shard key {key!r} is not SPLIT-N with SPLIT train, valid or test")
    return split, int(shard)
