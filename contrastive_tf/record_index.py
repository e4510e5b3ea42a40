"""Where each record of TFRecord shards sits, and reading one record from there: the random
access `tf.data.TFRecordDataset` lacks, which a uniform shuffle of records across shards needs.

A TFRecord file is a run of records, each a little-endian uint64 length, a 4-byte checksum of
the length, the data and a 4-byte checksum of the data (tensorflow `record_writer.cc`).
Indexing reads only the lengths, jumping from one to the next: on a local disk one page per
record (seconds for ImageNet's 1.28M records); on gs:// TensorFlow's reader fetches whole
buffers, so indexing costs about one read of the shards. The checksums are not verified: a
damaged record fails to parse or decode and is skipped as a damaged file is.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import os
import struct
import threading
import time

import numpy as np
import tensorflow as tf

from contrastive_tf import storage
from contrastive_tf.errors import reason

_log = logging.getLogger(__name__)
_LENGTH_BYTES, _CHECKSUM_BYTES = 8, 4
_INDEXING_THREADS = 16
# Remote shards kept open per reading thread.
_OPEN_PER_THREAD = 32


@dataclasses.dataclass(frozen=True)
class RecordIndex:
    """The records of `files`: record i is `lengths[i]` bytes at byte `offsets[i]` of
    `files[shards[i]]`. `damaged`: file -> why its records end early (or are absent)."""

    files: list[str]
    shards: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    damaged: dict[str, str]

    @property
    def count(self) -> int:
        return len(self.offsets)


def _open_for_index(path: str):
    """`path` for reading lengths here and there: unbuffered when local (one page a record)."""
    return tf.io.gfile.GFile(path, "rb") if storage.is_remote(path) else open(path, "rb", buffering=0)


def _index_shard(path: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(data offsets, lengths, None) of one shard's records; where the shard cannot be read
    or ends inside a record, the records before that and the problem."""
    offsets, lengths = [], []
    try:
        with _open_for_index(path) as shard:
            size, position = tf.io.gfile.stat(path).length, 0
            while position < size:
                shard.seek(position)
                header = shard.read(_LENGTH_BYTES)
                if len(header) < _LENGTH_BYTES:
                    break
                (length,) = struct.unpack("<Q", header)
                end = position + _LENGTH_BYTES + 2 * _CHECKSUM_BYTES + length
                if end > size:
                    break
                offsets.append(position + _LENGTH_BYTES + _CHECKSUM_BYTES)
                lengths.append(length)
                position = end
    except (OSError, tf.errors.OpError) as error:
        problem = f"cannot be read ({reason(error)})"
    else:
        problem = None if position == size else f"ends inside a record at byte {position}"
    return np.asarray(offsets, np.int64), np.asarray(lengths, np.int64), problem


def index_records(files: list[str], windows: list[tuple[int, int]] | None = None) -> RecordIndex:
    """The index of every record of `files`, the shards read in parallel; with `windows`,
    (skip, take) per file (take < 0: to the end), of those records only (a TFDS sub-split).
    Logs how long it took."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(min(_INDEXING_THREADS, len(files))) as pool:
        shards = list(pool.map(_index_shard, files))
    if windows is not None:
        cut = [slice(skip, None if take < 0 else skip + take) for skip, take in windows]
        shards = [(offsets[part], lengths[part], problem) for (offsets, lengths, problem), part in zip(shards, cut)]
    index = RecordIndex(
        files=list(files),
        shards=np.concatenate([np.full(len(offsets), i, np.int32) for i, (offsets, _, _) in enumerate(shards)]),
        offsets=np.concatenate([offsets for offsets, _, _ in shards]),
        lengths=np.concatenate([lengths for _, lengths, _ in shards]),
        damaged={path: problem for path, (_, _, problem) in zip(files, shards, strict=True) if problem},
    )
    _log.info("indexed %d records of %d shards in %.1f s", index.count, len(files), time.monotonic() - started)
    return index


class _RemoteShards(threading.local):
    """Each reading thread's open remote shards, the least recently read closed first."""

    def __init__(self):
        self.open: collections.OrderedDict = collections.OrderedDict()

    def read(self, path: str, offset: int, length: int) -> bytes:
        shard = self.open.pop(path, None) or tf.io.gfile.GFile(path, "rb")
        self.open[path] = shard
        while len(self.open) > _OPEN_PER_THREAD:
            self.open.popitem(last=False)[1].close()
        shard.seek(offset)
        return shard.read(length)


_remote_shards = _RemoteShards()


def _read(source: np.ndarray | bytes) -> bytes:
    path, where = np.asarray(source).item().decode().rsplit("@", 1)
    offset, length = (int(number) for number in where.split(":"))
    if storage.is_remote(path):
        data = _remote_shards.read(path, offset, length)
    else:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            data = os.pread(descriptor, length, offset)
        finally:
            os.close(descriptor)
    if len(data) != length:
        raise OSError(f"{path} ends inside the record at byte {offset}")
    return data


def read_record(source: tf.Tensor) -> tf.Tensor:
    """The serialized record a source `shard@offset:length` names (a scalar string tensor)."""
    record = tf.numpy_function(_read, [source], tf.string, stateful=False)
    record.set_shape([])
    return record
