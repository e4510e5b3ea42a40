"""Image data sets in TFRecord shards of `tf.train.Example`s, on any `tf.io.gfile` path.

The default keys are those of TensorFlow's ImageNet TFRecords (`build_imagenet_data.py` of
tensorflow/models, used by its ResNet and TPU reference models): `image/encoded` holds the
JPEG, `image/class/label` the class (1 to 1000 there, 0 unused). Shards are never decoded
before training: the first shard is read to probe the images' channels and sizes, and every
record's place is indexed (`record_index`), which gives the exact count and lets each epoch be
a uniform permutation of all records. Unindexed (`order="shards"`, for buckets where reading
every record's length costs a read of the data), the count is estimated as the first shard's
times the number of shards, exact for shards of equal size as the build script writes them,
and records are shuffled through a buffer.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from contrastive_tf.errors import UsageError, reason
from contrastive_tf.host_crops import decode_image
from contrastive_tf.record_index import index_records
from contrastive_tf.streams import Stream, indexed_record_stream, record_stream

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
# How each epoch orders the records: a uniform permutation of all (indexed), or the shards in
# a new order, interleaved, through a shuffle buffer (unindexed).
RECORD_ORDERS = ("uniform", "shards")
GLOB_CHARACTERS = "*?["
# Records of the first shard whose image sizes and channels are probed.
_PROBED_RECORDS = 64


def is_tfrecords(dataset: str) -> bool:
    """Whether `dataset` names TFRecord shards: a glob, or a file named as a TFRecord."""
    name = dataset.rsplit("/", 1)[-1]
    return any(c in dataset for c in GLOB_CHARACTERS) or name.endswith((".tfrecord", ".tfrecords", ".tfrec"))


def shard_files(pattern: str) -> list[str]:
    """The files `pattern` matches, sorted; UsageError when none does."""
    try:
        files = sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as error:
        raise UsageError(f"cannot list {pattern} ({reason(error)}); check the path and access") from None
    if not files:
        raise UsageError(f"no files match {pattern}; check the glob (e.g. /data/imagenet/train-*)")
    return files


@dataclasses.dataclass
class RecordLayout:
    """Where an Example keeps its image and label. `label_key` None: unlabelled."""

    image_key: str = IMAGE_KEY
    label_key: str | None = LABEL_KEY

    def parse(self, record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(encoded image, int64 label; -1 without a label key) of a serialized Example."""
        spec = {self.image_key: tf.io.FixedLenFeature([], tf.string)}
        if self.label_key:
            spec[self.label_key] = tf.io.FixedLenFeature([], tf.int64)
        example = tf.io.parse_single_example(record, spec)
        label = example[self.label_key] if self.label_key else tf.constant(-1, tf.int64)
        return example[self.image_key], label


@dataclasses.dataclass
class RecordSet:
    """One split's shards, as far as their first shard tells."""

    stream: Stream
    channels: int
    largest_side: int
    largest_label: int


def _keys_of(record: bytes) -> list[str]:
    return sorted(tf.train.Example.FromString(record).features.feature)


def read_shards(pattern: str, layout: RecordLayout, order: str = "uniform") -> RecordSet:
    """The shards `pattern` matches, probed, and indexed unless `order` is "shards" (see
    `RECORD_ORDERS`): UsageError when a record lacks the layout's keys (naming the keys it
    has) or holds no decodable image."""
    if order not in RECORD_ORDERS:
        raise UsageError(f"record order {order!r} is not one of {', '.join(RECORD_ORDERS)}")
    files = shard_files(pattern)
    try:
        first = [record.numpy() for record in tf.data.TFRecordDataset(files[0])]
    except tf.errors.OpError as error:
        raise UsageError(f"{files[0]} is not a readable TFRecord file ({reason(error)})") from None
    if not first:
        raise UsageError(f"{files[0]} holds no records; check the shards")
    keys = _keys_of(first[0])
    missing = [key for key in (layout.image_key, layout.label_key) if key and key not in keys]
    if missing:
        raise UsageError(
            f"the records of {pattern} have no {missing[0]} (they have: {', '.join(keys)}); set image_key and "
            "label_key to the keys of the image bytes and the class (label_key '' for unlabelled records)"
        )
    channels, largest_side = 1, 0
    for record in first[:_PROBED_RECORDS]:
        try:
            image = decode_image(layout.parse(record)[0])
        except tf.errors.OpError:
            continue
        channels = 3 if image.shape[-1] >= 3 else channels
        largest_side = max(largest_side, *image.shape[:2])
    if not largest_side:
        raise UsageError(f"no image in the first records of {files[0]} can be decoded; check image_key")
    largest_label = max(int(layout.parse(record)[1]) for record in first)
    if order == "shards":
        stream = record_stream(files, layout.parse, len(first) * len(files), pattern)
    else:
        stream = _indexed(files, layout, pattern)
    return RecordSet(stream, channels, largest_side, largest_label)


def _indexed(files: list[str], layout: RecordLayout, pattern: str) -> Stream:
    """The stream of every record of `files` by its place."""
    index = index_records(files)
    if not index.count:
        raise UsageError(f"no whole record in the shards of {pattern}; check the files")
    return indexed_record_stream(index, layout.parse, pattern)
