"""Streamed splits: every epoch of a folder is a uniform permutation of its files, a resumed
run starts at its step without reading what came before and draws the same views, workers
read disjoint shares, and a file that cannot be decoded is skipped and counted where it is met."""

import logging

import numpy as np
import tensorflow as tf

from contrastive_tf import data as data_module
from contrastive_tf.data import load_data, pretraining_batches
from contrastive_tf.encoders import build_encoder
from contrastive_tf.evaluation import extract_features, split_labels, split_subset
from contrastive_tf.streams import UNDECODABLE, file_stream


def _positions(stream, seed=0, first=0, shard=(1, 0), count=30):
    elements = stream.positions(seed, first, shard).take(count).as_numpy_iterator()
    return [(path.decode(), int(position)) for path, _, position in elements]


def test_each_epoch_is_a_new_permutation_of_every_file_repeatable_for_a_seed():
    paths = [f"f{index}" for index in range(10)]
    stream = file_stream(paths, list(range(10)), "test")
    order = [path for path, _ in _positions(stream)]
    epochs = [order[0:10], order[10:20], order[20:30]]
    assert all(sorted(epoch) == sorted(paths) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != paths
    assert order == [path for path, _ in _positions(stream)]
    assert order != [path for path, _ in _positions(stream, seed=1)]


def test_a_resumed_stream_starts_at_its_position_and_workers_share_it_out():
    stream = file_stream([f"f{index}" for index in range(10)], list(range(10)), "test")
    whole = _positions(stream, count=30)
    assert _positions(stream, first=13, count=17) == whole[13:]
    shares = [_positions(stream, first=4, shard=(3, worker), count=6) for worker in range(3)]
    assert sorted(sum(shares, [])) == sorted(whole[4:22])
    assert all(position % 3 == worker for worker, share in enumerate(shares) for _, position in share)


def _folder(tmp_path, count, size=(40, 60)):
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (*size, 3), np.uint8)
        (tmp_path / f"{index:03d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return tmp_path


def test_a_resumed_run_sees_the_same_views_as_an_uninterrupted_one(tmp_path):
    data = load_data(str(_folder(tmp_path, 12)), image_size=16)
    assert data.host_crops
    uninterrupted = [batch.numpy() for batch in pretraining_batches(data, 4, seed=3, epochs=2)]
    resumed = [batch.numpy() for batch in pretraining_batches(data, 4, seed=3, first_step=4, epochs=2)]
    assert len(uninterrupted) == 6 and len(resumed) == 2
    for expected, batch in zip(uninterrupted[4:], resumed):
        np.testing.assert_array_equal(batch, expected)


def test_an_undecodable_file_is_skipped_where_it_is_met_and_counted(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(data_module, "EAGER_DECODE_MAX_FILES", 4)
    folder = _folder(tmp_path, 8, size=(16, 16))
    (folder / "003.png").write_bytes(b"truncated")
    data = load_data(str(folder))
    assert data.train.stream is not None and data.train.num_examples == 8
    caplog.set_level(logging.WARNING)
    images = list(pretraining_batches(data, batch_size=7, seed=0, epochs=1).unbatch())
    assert len(images) == 7
    assert dict(data.train.stream.skipped.counts) == {UNDECODABLE: 1}
    messages = [record.getMessage() for record in caplog.records]
    assert any("003.png" in message and "1 skipped so far" in message for message in messages)


def test_a_sample_of_a_streamed_split_reads_only_its_files(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "EAGER_DECODE_MAX_FILES", 4)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        _folder(tmp_path / label, 6, size=(16, 16))
    (tmp_path / "a" / "000.png").write_bytes(b"unreadable, and never read: not in the sample")
    data = load_data(str(tmp_path))
    labels = split_labels(data.train)
    assert labels.tolist() == [0] * 6 + [1] * 6  # from the listing, no image decoded
    sample = split_subset(data.train, np.asarray([3, 4, 9]))
    images = [image.numpy() for image, _ in sample.dataset]
    assert sample.num_examples == 3 and len(images) == 3
    assert data.train.stream.skipped.total == 0
    features, sampled_labels = extract_features(build_encoder("small_cnn", (16, 16, 3), width=0.25), sample)
    assert features.shape[0] == 3 and sampled_labels.tolist() == [0, 0, 1]
