"""Splits too large to decode before training: encoded images read anew on every pass.

A `Stream` lists where a split's images are (files, TFRecord shards, a TFDS split) and reads
them on demand, so the first training step comes after listing, not after decoding. Every
epoch of a folder or of indexed TFRecord shards is a uniform random permutation of all its
images (`tf.random.experimental.index_shuffle`, seeded by the run's seed and the epoch);
unindexed shards and TFDS splits are read in a new random order each epoch, interleaved,
through a shuffle buffer. A position in the stream (epoch x size + index) seeds each image's
crops, so a resumed run starts at its step's position without reading what came before
(folders, indexed shards) and draws the same views.

A file that cannot be read or decoded is skipped where it is met, logged and counted in
`Stream.skipped`; the run's model card reports the count.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from contrastive_tf.record_index import RecordIndex, index_records, read_record

_log = logging.getLogger(__name__)
_AUTOTUNE = tf.data.AUTOTUNE
# Far beyond any run: the streams are endless and `fit` counts the steps.
_ENDLESS = 2**62
# Images decoded at once per host; the interleave keeps their order.
_PARALLEL_DECODES = 16
# Shards read at once, and the records shuffled among them.
_SHARDS_READ_AT_ONCE = 16
_RECORD_SHUFFLE_BUFFER = 10_000
# Skipped files named one by one in the log before only every hundredth is.
_NAMED_SKIPS = 10
UNDECODABLE = "cannot be read or decoded"


class SkippedFiles:
    """The distinct files a stream skipped, counted by reason, each logged when first met
    (a file met again in a later epoch is skipped again, not counted again)."""

    def __init__(self, where: str):
        self.where = where
        self.counts: collections.Counter = collections.Counter()
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, source: bytes, reason: str = UNDECODABLE) -> None:
        with self._lock:
            if hash(source) in self._seen:
                return
            self._seen.add(hash(source))
            self.counts[reason] += 1
            total = self.total
        if total <= _NAMED_SKIPS or total % 100 == 0:
            name = source.decode(errors="replace") if len(source) < 1000 else f"a record of {len(source)} bytes"
            _log.warning("%s: skipped %s (%s); %d skipped so far", self.where, name, reason, total)


@dataclasses.dataclass
class Stream:
    """Where a split's encoded images are, read on every pass.

    Attributes:
        positions: (seed, first, shard) -> an endless `tf.data.Dataset` of (source, label,
            position) from stream position `first` on; `shard` = (count, index) keeps every
            count-th file (or shard) for worker `index`.
        in_order: () -> one pass of (source, label) in a fixed order, for evaluation.
        read: (source, label) -> (encoded image, label): a file's contents, a record's
            image, or the source itself when it is the encoded image.
        num_examples: images listed (the unreadable ones among them are found while reading).
        skipped: the files skipped so far.
        labels_inside: whether the labels are known only once `read` reads a source (records
            read by offset); otherwise the label beside each source is the image's.
    """

    positions: Callable[[int, int, tuple[int, int]], tf.data.Dataset]
    in_order: Callable[[], tf.data.Dataset]
    read: Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
    num_examples: int
    skipped: SkippedFiles
    labels_inside: bool = False

    def labels(self) -> tf.data.Dataset:
        """The labels of `in_order`, without reading an image unless `labels_inside`."""
        if self.labels_inside:
            return self.in_order().map(lambda source, label: self.read(source, label)[1], num_parallel_calls=_AUTOTUNE)
        return self.in_order().map(lambda source, label: label)


def _permuted(index: tf.Tensor, seed: int, epoch: tf.Tensor, count: int) -> tf.Tensor:
    """Where `index` goes in epoch `epoch`'s uniform random permutation of `count` items."""
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.experimental.index_shuffle(tf.cast(index, tf.int64), key, tf.constant(count - 1, tf.int64))


def _uniform_positions(
    count: int,
    item_at: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]],
    seed: int,
    first: int,
    shard: tuple[int, int],
) -> tf.data.Dataset:
    """(source, label, position) from position `first` on, each epoch a uniform permutation of
    `count` items, `item_at(i)` giving item i's (source, label); worker `shard[1]` of
    `shard[0]` takes every shard[0]-th position, before anything is read."""
    workers, index = shard

    def at(position):
        epoch, offset = position // count, position % count
        return (*item_at(_permuted(offset, seed, epoch, count)), position)

    start = first + (index - first) % workers
    return tf.data.Dataset.range(start, _ENDLESS, workers).map(at)


def _unchanged(source: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return source, label


def file_stream(paths: list[str], labels: list[int], where: str) -> Stream:
    """Image files read on every pass; each epoch a uniform permutation of all of them."""
    path_array, label_array = tf.constant(np.asarray(paths, dtype=object)), tf.constant(np.asarray(labels, np.int64))

    def positions(seed: int, first: int, shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
        return _uniform_positions(len(paths), lambda item: (path_array[item], label_array[item]), seed, first, shard)

    def in_order() -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((path_array, label_array))

    def read(source, label):
        return tf.io.read_file(source), label

    return Stream(positions, in_order, read, len(paths), SkippedFiles(where))


def indexed_record_stream(
    index: RecordIndex, parse: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]], where: str
) -> Stream:
    """TFRecord shards read record by record at the offsets `index` found: each epoch a
    uniform permutation of all their records, whatever their order in the shards. A source
    names its record, `shard@offset:length`, so that a skipped one can be found; the shards
    the index found damaged count as skipped from the start."""
    files = tf.constant(np.asarray(index.files, dtype=object))
    shards, offsets, lengths = (tf.constant(a) for a in (index.shards, index.offsets, index.lengths))

    def source_of(item):
        offset, length = tf.strings.as_string(offsets[item]), tf.strings.as_string(lengths[item])
        return tf.strings.join([files[shards[item]], "@", offset, ":", length]), tf.constant(-1, tf.int64)

    def positions(seed: int, first: int, shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
        return _uniform_positions(index.count, source_of, seed, first, shard)

    def in_order() -> tf.data.Dataset:
        return tf.data.Dataset.range(index.count).map(source_of)

    def read(source, label):
        return parse(read_record(source))

    skipped = SkippedFiles(where)
    for path, problem in index.damaged.items():
        skipped.record(path.encode(), problem)
    return Stream(positions, in_order, read, index.count, skipped, labels_inside=True)


def _numbered(records: tf.data.Dataset, first: int, shard: tuple[int, int]) -> tf.data.Dataset:
    """(source, label, position) of worker `shard[1]`'s endless `records` from stream position
    `first` on: its n-th record is position n x count + index, as a folder's are."""
    count, index = shard
    return records.enumerate().skip(first // count).map(lambda n, record: (*record, n * count + index))


def record_stream(
    files: list[str], parse: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]], num_examples: int, where: str
) -> Stream:
    """TFRecord shards of encoded images, `parse` turning a serialized record into
    (encoded image, label). Each epoch reads the shards in a new random order, interleaved
    and shuffled through a buffer (not a uniform permutation: records have no random access;
    a resumed run reads, without decoding, the records before its position)."""
    file_array = tf.constant(np.asarray(files, dtype=object))

    def positions(seed: int, first: int, shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
        count, index = shard
        mine = tf.constant(np.asarray(files[index::count], dtype=object))
        shards = len(files[index::count])

        def epoch(number):
            order = tf.data.Dataset.range(shards).map(lambda i: mine[_permuted(i, seed, number, shards)])
            records = order.interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(shards, _SHARDS_READ_AT_ONCE),
                num_parallel_calls=_AUTOTUNE,
                deterministic=True,
            )
            return records.shuffle(_RECORD_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False)

        return _numbered(tf.data.Dataset.range(_ENDLESS).flat_map(epoch).map(parse), first, shard)

    def in_order() -> tf.data.Dataset:
        return tf.data.TFRecordDataset(file_array).map(parse)

    return Stream(positions, in_order, _unchanged, num_examples, SkippedFiles(where))


def tfds_stream(
    builder, split: str, image_key: str, label_key: str | None, where: str, order: str = "uniform"
) -> Stream:
    """A TFDS split's encoded images (not decoded by TFDS: the crops decode them). A split in
    TFRecord files (TFDS' default format) is indexed and read by place, unless `order` is
    "shards": each epoch a uniform permutation (`indexed_record_stream`). Otherwise each epoch
    reads the split's files in a new order (TFDS' `shuffle_files`, reshuffled every
    iteration), through a shuffle buffer, and a resumed run reads, without decoding, the
    records before its position."""
    import tensorflow_datasets as tfds

    decoders = {image_key: tfds.decode.SkipDecoding()}

    def labelled(example):
        label = example[label_key] if label_key else tf.constant(-1, tf.int64)
        return example[image_key], tf.cast(label, tf.int64)

    if order == "uniform" and builder.info.file_format == tfds.core.FileFormat.TFRECORD:
        instructions = builder.info.splits[split].file_instructions
        index = index_records(
            [instruction.filename for instruction in instructions],
            [(instruction.skip, instruction.take) for instruction in instructions],
        )

        def parse(record):
            return labelled(builder.info.features.deserialize_example(record, decoders=decoders))

        return indexed_record_stream(index, parse, where)

    def positions(seed: int, first: int, shard: tuple[int, int] = (1, 0)) -> tf.data.Dataset:
        count, index = shard
        context = tf.distribute.InputContext(count, index) if count > 1 else None
        config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True, input_context=context)
        records = builder.as_dataset(split=split, shuffle_files=True, decoders=decoders, read_config=config)
        records = records.repeat().shuffle(_RECORD_SHUFFLE_BUFFER, seed=seed).map(labelled)
        return _numbered(records, first, shard)

    def in_order() -> tf.data.Dataset:
        return builder.as_dataset(split=split, shuffle_files=False, decoders=decoders).map(labelled)

    return Stream(positions, in_order, _unchanged, builder.info.splits[split].num_examples, SkippedFiles(where))


def attempted(
    dataset: tf.data.Dataset, decode: Callable[..., tf.Tensor], fallback: tf.Tensor, skipped: SkippedFiles
) -> tf.data.Dataset:
    """`decode(*element)` for each element, with the elements whose decoding fails (a missing,
    truncated or corrupt file) dropped and recorded in `skipped` (`element[0]` names them).
    tf.data has no try/except: each element is a one-element dataset whose failure falls
    back to `fallback` with a flag saying so."""

    def report(source):
        skipped.record(source.numpy())
        return True

    def attempt(*element):
        decoded = tf.data.Dataset.from_tensors(element).map(lambda *e: (decode(*e), True)).ignore_errors()
        failed = tf.data.Dataset.from_tensors(element[0]).map(
            lambda source: (fallback, tf.logical_not(tf.py_function(report, [source], tf.bool)))
        )
        return decoded.concatenate(failed).take(1)

    def succeeded(decoded, ok):
        return ok

    def without_flag(decoded, ok):
        return decoded

    attempts = dataset.interleave(
        attempt, cycle_length=_PARALLEL_DECODES, num_parallel_calls=_AUTOTUNE, deterministic=True
    )
    return attempts.filter(succeeded).map(without_flag)
