"""TFRecord shards read by each record's place: the index finds every record (on the local
disk and on a filesystem that is not, `ram://` standing in for gs://), each epoch is a uniform
permutation of all records whatever the shards' order, a resumed run starts at its position
without reading what came before, and damaged shards lose only their damaged records, counted."""

import logging

import numpy as np
import pytest
import tensorflow as tf
from test_sources import write_shards

from contrastive_tf.data import load_data, pretraining_batches
from contrastive_tf.evaluation import split_labels
from contrastive_tf.record_index import index_records, read_record
from contrastive_tf.streams import UNDECODABLE


def _write(prefix: str, payloads: list[list[bytes]]) -> list[str]:
    tf.io.gfile.makedirs(prefix.rsplit("/", 1)[0])
    paths = [f"{prefix}-{shard}" for shard in range(len(payloads))]
    for path, records in zip(paths, payloads):
        with tf.io.TFRecordWriter(path) as writer:
            for record in records:
                writer.write(record)
    return paths


def _payloads(shards: int, per_shard: int) -> list[list[bytes]]:
    rng = np.random.default_rng(0)
    return [[rng.bytes(int(rng.integers(0, 3000))) for _ in range(per_shard)] for _ in range(shards)]


@pytest.mark.parametrize("root", ["local", "ram://bucket"])
def test_the_index_finds_every_record_and_each_reads_back_whole(root, tmp_path):
    payloads = _payloads(shards=3, per_shard=7)
    paths = _write(f"{tmp_path if root == 'local' else root}/train", payloads)
    index = index_records(paths)
    assert index.count == 21 and not index.damaged
    assert list(index.shards) == [0] * 7 + [1] * 7 + [2] * 7
    for shard, offset, length, expected in zip(index.shards, index.offsets, index.lengths, sum(payloads, [])):
        source = tf.constant(f"{paths[shard]}@{offset}:{length}")
        assert read_record(source).numpy() == expected


def test_a_shard_that_ends_inside_a_record_keeps_the_records_before_it(tmp_path):
    payloads = _payloads(shards=2, per_shard=4)
    paths = _write(str(tmp_path / "train"), payloads)
    whole = tf.io.gfile.GFile(paths[1], "rb").read()
    with open(paths[1], "wb") as shard:
        shard.write(whole[: len(whole) - 10])
    index = index_records([*paths, str(tmp_path / "missing")])
    assert index.count == 7
    assert index.damaged[paths[1]].startswith("ends inside a record at byte ")
    assert index.damaged[str(tmp_path / "missing")].startswith("cannot be read")


def test_each_epoch_is_a_uniform_permutation_of_all_records_across_shards(tmp_path):
    # 4 shards of 30 records, labels 1-3 in turn; images named by their index in the image.
    write_shards(str(tmp_path / "train"), shards=4, per_shard=30)
    data = load_data(str(tmp_path / "train-*"), image_size=32)
    stream = data.train.stream
    assert data.train.num_examples == 120
    sources = [source.decode() for source, _, _ in stream.positions(7, 0, (1, 0)).take(360).as_numpy_iterator()]
    epochs = [sources[0:120], sources[120:240], sources[240:360]]
    assert all(len(set(epoch)) == 120 for epoch in epochs) and set(epochs[0]) == set(epochs[1]) == set(epochs[2])
    assert epochs[0] != epochs[1] != epochs[2]
    # A shuffle of shard order through a buffer keeps a shard's records together early on; a
    # uniform permutation draws the first 12 records from all four shards (true for this seed).
    assert len({source.split("@")[0] for source in epochs[0][:12]}) == 4
    resumed = [source.decode() for source, _, _ in stream.positions(7, 250, (1, 0)).take(110).as_numpy_iterator()]
    assert resumed == sources[250:360]
    shares = [list(stream.positions(7, 0, (2, worker)).take(60).as_numpy_iterator()) for worker in range(2)]
    assert sorted(source.decode() for share in shares for source, _, _ in share) == sorted(epochs[0])
    assert list(split_labels(data.train)) == [1 + i % 3 for i in range(120)]


def test_a_record_whose_shard_is_gone_is_skipped_and_named(tmp_path, caplog):
    write_shards(str(tmp_path / "train"), shards=2, per_shard=10)
    data = load_data(str(tmp_path / "train-*"), image_size=32)
    (tmp_path / "train-00001-of-00002").unlink()
    caplog.set_level(logging.WARNING)
    # An epoch is 4 batches of the 20 indexed records: the 10 readable ones, then the next epoch's.
    batches = list(pretraining_batches(data, 5, seed=0, epochs=1))
    assert len(batches) == 4 and data.train.stream.skipped.counts == {UNDECODABLE: 10}
    assert any("train-00001-of-00002@" in record.getMessage() for record in caplog.records)


def test_unindexed_shards_are_still_read_with_an_estimated_count(tmp_path):
    write_shards(str(tmp_path / "train"), shards=3, per_shard=5)
    data = load_data(str(tmp_path / "train-*"), image_size=32, record_order="shards")
    assert data.train.num_examples == 15 and not data.train.stream.labels_inside
    labels = [int(label) for _, labels in pretraining_batches(data, 5, seed=0, epochs=1) for label in labels]
    assert sorted(labels) == sorted(1 + i % 3 for i in range(15))
