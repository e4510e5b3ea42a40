"""Data sources beyond files in memory: any TFDS builder by name (a tiny one prepared here),
TFRecord shards by glob in the layout of TensorFlow's ImageNet records, and files on a
`tf.io.gfile` filesystem that is not the local disk (`ram://`, standing in for gs://)."""

import io

import numpy as np
import pytest
import tensorflow as tf

import tiny_tfds
from contrastive_tf.data import _default_splits, load_data, pretraining_batches
from contrastive_tf.errors import UsageError
from contrastive_tf.evaluation import split_labels


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    for config in ("fixed", "photos"):
        tiny_tfds.prepare(data_dir, config)
    return data_dir


def test_any_tfds_builder_loads_by_name_with_its_features_found(tfds_dir):
    data = load_data("tiny_images/fixed", data_dir=tfds_dir)
    assert data.image_shape == (16, 16, 3) and data.class_names == tiny_tfds.CLASSES
    assert (data.train.num_examples, data.test.num_examples) == (24, 9)  # train and validation
    assert data.unlabeled.num_examples == 6 and data.pretrain.num_examples == 30
    image, label = next(iter(data.test.dataset))
    assert image.dtype == tf.uint8 and int(label) == 0


def test_tfds_splits_are_chosen_by_name(tfds_dir):
    data = load_data("tiny_images/fixed:1.0.0", data_dir=tfds_dir, train_split="validation", test_split="train")
    assert (data.train.num_examples, data.test.num_examples) == (9, 24) and data.unlabeled is None


def test_a_split_the_builder_lacks_is_a_usage_error_naming_its_splits(tfds_dir):
    with pytest.raises(UsageError, match="has no split 'test'; its splits are train, validation, unlabelled"):
        load_data("tiny_images/fixed", data_dir=tfds_dir, test_split="test")


def test_a_name_that_is_no_tfds_builder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not a TFDS builder, a path or 'sample'"):
        load_data("no_such_builder_xyz", data_dir=str(tmp_path))


def test_imagenet_evaluates_on_validation_as_its_test_split_has_no_labels():
    assert _default_splits("imagenet2012", ["train", "validation", "test"]) == ("train", "validation", None)
    assert _default_splits("cifar10", ["train", "test"]) == ("train", "test", None)
    assert _default_splits("stl10", ["train", "test", "unlabelled"]) == ("train", "test", "unlabelled")


def test_tfds_photos_of_varied_sizes_need_an_image_size(tfds_dir):
    with pytest.raises(UsageError, match="vary in size; set image_size"):
        load_data("tiny_images/photos", data_dir=tfds_dir)


def test_tfds_photos_stream_and_crop_each_view_from_the_original(tfds_dir):
    data = load_data("tiny_images/photos", data_dir=tfds_dir, image_size=24)
    assert data.host_crops and data.train.stream is not None and data.image_shape == (24, 24, 3)
    images = [image for image, _ in data.test.dataset]
    assert len(images) == 9 and images[0].shape == (24, 24, 3)
    views, labels = next(iter(pretraining_batches(data, batch_size=8, seed=0)))
    assert views.shape == (8, 2, 24, 24, 3) and labels.shape == (8,)


def test_a_streamed_tfds_split_is_indexed_and_each_epoch_a_uniform_permutation(tfds_dir):
    import tensorflow_datasets as tfds

    data = load_data("tiny_images/photos", data_dir=tfds_dir, image_size=24, train_split="train[4:20]")
    stream = data.train.stream
    assert stream.labels_inside and data.train.num_examples == 16
    expected = tfds.builder("tiny_images/photos", data_dir=tfds_dir).as_dataset(split="train[4:20]")
    assert list(split_labels(data.train)) == [int(example["kind"]) for example in expected]
    sources = [source for source, _, _ in stream.positions(0, 0, (1, 0)).take(32).as_numpy_iterator()]
    assert sorted(sources[:16]) == sorted(sources[16:]) and sources[:16] != sources[16:] and len(set(sources)) == 16
    unindexed = load_data("tiny_images/photos", data_dir=tfds_dir, image_size=24, record_order="shards")
    assert not unindexed.train.stream.labels_inside and unindexed.train.num_examples == 24


def _jpeg(rng, height, width) -> bytes:
    return tf.io.encode_jpeg(tf.constant(rng.integers(0, 256, (height, width, 3), np.uint8))).numpy()


def _example(features: dict) -> bytes:
    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in features.items()}))


def write_shards(prefix: str, shards: int, per_shard: int, keys=("image/encoded", "image/class/label"), seed=0):
    """Shards named as TensorFlow's ImageNet build script names them, of JPEGs of varied sizes."""
    rng = np.random.default_rng(seed)
    tf.io.gfile.makedirs(prefix.rsplit("/", 1)[0])
    for shard in range(shards):
        with tf.io.TFRecordWriter(f"{prefix}-{shard:05d}-of-{shards:05d}") as writer:
            for index in range(per_shard):
                height, width = rng.integers(40, 90, 2)
                values = {keys[0]: _jpeg(rng, height, width), keys[1]: 1 + (shard * per_shard + index) % 3}
                writer.write(_example(values).SerializeToString())


def test_tfrecord_shards_in_imagenets_layout_stream_by_glob(tmp_path):
    write_shards(str(tmp_path / "train"), shards=3, per_shard=8)
    write_shards(str(tmp_path / "validation"), shards=1, per_shard=5, seed=1)
    data = load_data(str(tmp_path / "train-*"), image_size=32, test_split=str(tmp_path / "validation-*"))
    assert data.host_crops and data.image_shape == (32, 32, 3)
    assert data.train.num_examples == 24 and data.num_classes == 4  # labels 1-3, as ImageNet's 1-1000
    assert len([label for _, label in data.test.dataset]) == 5
    batches = pretraining_batches(data, batch_size=8, seed=0, epochs=1)
    seen = [int(label) for _, labels in batches for label in labels]
    assert len(seen) == 24 and sorted(seen) == sorted([1 + i % 3 for i in range(24)])


def test_records_without_the_keys_name_the_keys_they_have(tmp_path):
    write_shards(str(tmp_path / "train"), shards=1, per_shard=2, keys=("jpeg", "class"))
    with pytest.raises(UsageError, match=r"have no image/encoded \(they have: class, jpeg\); set image_key"):
        load_data(str(tmp_path / "train-*"), image_size=32)
    data = load_data(str(tmp_path / "train-*"), image_size=32, image_key="jpeg", label_key="class")
    assert data.num_classes == 3
    unlabelled = load_data(str(tmp_path / "train-*"), image_size=32, image_key="jpeg", label_key="")
    assert unlabelled.num_classes == 0


def test_a_glob_that_matches_nothing_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no files match .*train-\\*; check the glob"):
        load_data(str(tmp_path / "train-*"), image_size=32)


def test_tfrecords_need_an_image_size(tmp_path):
    write_shards(str(tmp_path / "train"), shards=1, per_shard=2)
    with pytest.raises(UsageError, match="set image_size for the TFRecords"):
        load_data(str(tmp_path / "train-*"))


def test_images_far_smaller_than_image_size_are_a_usage_error(tmp_path):
    write_shards(str(tmp_path / "train"), shards=1, per_shard=2)
    with pytest.raises(UsageError, match="too small for image_size 512 .*; lower image_size or use larger images"):
        load_data(str(tmp_path / "train-*"), image_size=512)


def test_tfrecords_and_npz_load_from_a_filesystem_that_is_not_the_local_disk():
    write_shards("ram://bucket/records/train", shards=2, per_shard=4)
    data = load_data("ram://bucket/records/train-*", image_size=32)
    assert data.train.num_examples == 8 and len(list(data.train.dataset)) == 8
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.zeros((5, 8, 8), np.uint8), y_train=np.arange(5))
    with tf.io.gfile.GFile("ram://bucket/digits.npz", "wb") as file:
        file.write(buffer.getvalue())
    assert load_data("ram://bucket/digits.npz").train.num_examples == 5
    with pytest.raises(UsageError, match="dataset path ram://bucket/missing.npz does not exist"):
        load_data("ram://bucket/missing.npz")


def test_an_image_folder_loads_from_a_filesystem_that_is_not_the_local_disk():
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for label in ("cat", "dog"):
            tf.io.gfile.makedirs(f"ram://photos/{split}/{label}")
            for index in range(count):
                with tf.io.gfile.GFile(f"ram://photos/{split}/{label}/{index}.jpg", "wb") as file:
                    file.write(_jpeg(rng, 60, 90))
    with tf.io.gfile.GFile("ram://photos/train/cat/notes.txt", "w") as file:
        file.write("not an image")
    data = load_data("ram://photos", image_size=32)
    assert data.class_names == ("cat", "dog") and data.host_crops
    assert (data.train.num_examples, data.test.num_examples) == (6, 4)
    assert [int(label) for _, label in data.test.dataset] == [0, 0, 1, 1]
    with pytest.raises(UsageError, match="dataset path ram://nowhere does not exist"):
        load_data("ram://nowhere")


def test_tfds_images_far_smaller_than_image_size_are_a_usage_error(tfds_dir):
    with pytest.raises(UsageError, match="at most 16 px a side, too small for image_size 128"):
        load_data("tiny_images/fixed", data_dir=tfds_dir, image_size=128)
