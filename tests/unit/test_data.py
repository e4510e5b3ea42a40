"""Loading data: .npz files and the pretraining pipeline (image folders: test_folders.py; TFDS
builders and TFRecords: test_sources.py)."""

import time

import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf import data as data_module
from contrastive_tf.data import UNLABELED, load_data, pretraining_batches, sample_path
from contrastive_tf.errors import UsageError


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def test_embedded_sample_is_real_mnist_and_small():
    assert sample_path().stat().st_size < 3 * 2**20
    data = load_data("sample")
    assert data.image_shape == (28, 28, 1)
    assert data.train.num_examples == 10_000 and data.test.num_examples == 2_000
    assert data.num_classes == 10
    images, labels = next(iter(data.train.dataset.batch(10_000)))
    assert images.dtype == tf.uint8 and np.bincount(labels.numpy()).tolist() == [1000] * 10
    # MNIST's published mean pixel intensity is 0.1307.
    assert abs(float(tf.reduce_mean(tf.cast(images, tf.float32))) / 255 - 0.1307) < 0.01


def test_npz_with_grayscale_images_gets_a_channel_axis(tmp_path):
    path = _write_npz(
        tmp_path / "d.npz",
        x_train=np.zeros((6, 12, 12), np.uint8),
        y_train=np.arange(6) % 3,
        x_test=np.zeros((3, 12, 12), np.uint8),
        y_test=np.arange(3),
    )
    data = load_data(path)
    assert data.image_shape == (12, 12, 1) and data.num_classes == 3 and data.test.num_examples == 3


def test_npz_without_labels_is_unlabelled(tmp_path):
    data = load_data(_write_npz(tmp_path / "d.npz", x_train=np.zeros((4, 8, 8, 3), np.uint8)))
    assert data.num_classes == 0 and data.test is None
    assert {int(label) for _, label in data.train.dataset} == {UNLABELED}


def test_float_npz_in_unit_range_becomes_uint8(tmp_path):
    data = load_data(_write_npz(tmp_path / "d.npz", x_train=np.full((2, 8, 8, 3), 1.0, np.float32)))
    image, _ = next(iter(data.train.dataset))
    assert image.dtype == tf.uint8 and int(tf.reduce_min(image)) == 255


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((2, 8, 8), np.uint8)}, "no x_train"),
        ({"x_train": np.zeros((2, 8), np.uint8)}, "has shape"),
        ({"x_train": np.zeros((2, 8, 8), np.int32)}, "has dtype"),
        ({"x_train": np.zeros((2, 8, 8), np.uint8), "y_train": np.zeros(3, np.int64)}, "3 labels for 2 images"),
    ],
)
def test_malformed_npz_is_a_usage_error(tmp_path, arrays, message):
    with pytest.raises(UsageError, match=message):
        load_data(_write_npz(tmp_path / "bad.npz", **arrays))


def test_npz_that_needs_pickle_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, x_train=np.array([object()], dtype=object))
    with pytest.raises(UsageError, match="not a readable .npz"):
        load_data(str(path))


def test_unknown_name_and_missing_path_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown dataset 'imagenet42'"):
        load_data("imagenet42")
    with pytest.raises(UsageError, match="does not exist"):
        load_data(str(tmp_path / "missing.npz"))


def test_image_size_resizes_every_split(tmp_path):
    path = _write_npz(tmp_path / "d.npz", x_train=np.zeros((4, 8, 8), np.uint8), x_test=np.zeros((2, 8, 8), np.uint8))
    data = load_data(path, image_size=16)
    assert data.image_shape == (16, 16, 1)
    assert next(iter(data.test.dataset))[0].shape == (16, 16, 1)


def test_offline_tfds_fails_fast_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(data_module, "_can_reach_tfds_servers", lambda timeout=3.0: False)
    start = time.monotonic()
    with pytest.raises(UsageError, match="cannot download it; set data_dir"):
        load_data("mnist", data_dir=str(tmp_path))
    assert time.monotonic() - start < 30


def test_pretraining_batches_are_full_shuffled_and_labelled(tmp_path):
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(4, 1).repeat(4, 2)
    data = load_data(_write_npz(tmp_path / "d.npz", x_train=x, y_train=np.arange(10)))
    batches = list(pretraining_batches(data, batch_size=4, seed=0))
    assert len(batches) == 2 and all(images.shape == (4, 4, 4, 1) for images, _ in batches)
    for images, labels in batches:
        np.testing.assert_array_equal(images.numpy()[:, 0, 0, 0], labels.numpy())
    first_epoch = np.concatenate([labels for _, labels in batches])
    assert not np.array_equal(first_epoch, np.arange(8))


def test_batch_larger_than_the_data_is_a_usage_error(tmp_path):
    data = load_data(_write_npz(tmp_path / "d.npz", x_train=np.zeros((3, 4, 4), np.uint8)))
    with pytest.raises(UsageError, match="fewer than one batch"):
        pretraining_batches(data, batch_size=8)
