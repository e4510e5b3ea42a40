"""Image search on an export: the encoder read through the serving signature alone, an
index ranked by cosine similarity as NumPy ranks it, and a cache that is reused until the
export or the images change."""

import os
import pathlib
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.export import export_encoder
from contrastive_tf.plots import plot_neighbours
from contrastive_tf.run_folder import METADATA_FILE
from contrastive_tf.search import ExportedEncoder, ImageIndex, cached_index, fit_images, index_key, read_images

SHAPE = (28, 28, 1)
_RNG = np.random.default_rng(0)


def _export(path: pathlib.Path, seed: int):
    keras.utils.set_random_seed(seed)
    encoder = build_encoder("small_cnn", SHAPE, width=0.25)
    return encoder, export_encoder(encoder, path, SHAPE)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small random encoder and its export."""
    return _export(tmp_path_factory.mktemp("export") / "export", seed=0)


@pytest.fixture(scope="module")
def encoder(exported):
    return ExportedEncoder(exported[1])


def _images(count: int, shape=SHAPE) -> np.ndarray:
    return _RNG.integers(0, 256, (count, *shape), np.uint8)


def _npz(path: pathlib.Path, count: int = 40) -> tuple[pathlib.Path, np.ndarray, np.ndarray]:
    x_train, y_train = _images(count), _RNG.integers(0, 3, count)
    np.savez(path, x_train=x_train[..., 0], y_train=y_train, x_test=_images(5)[..., 0], class_names=["a", "b", "c"])
    return path, x_train, y_train


def _folder(root: pathlib.Path, names: list[str]) -> dict[str, np.ndarray]:
    """PNG images of the export's size at `names` (paths relative to `root`)."""
    images = {}
    for name in names:
        images[name] = _images(1)[0]
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(tf.io.encode_png(images[name]).numpy())
    return images


def test_an_export_of_any_size_takes_images_at_the_size_its_card_says_it_was_trained_at(exported, encoder):
    model, _ = exported
    images = _images(6)
    assert encoder.image_shape == SHAPE
    np.testing.assert_allclose(encoder(images), model(images.astype(np.float32) / 255.0), rtol=1e-5, atol=1e-6)


def test_images_of_another_size_and_colour_are_converted_to_the_export_input():
    colour = np.broadcast_to(np.asarray([200, 100, 50], np.uint8), (2, 40, 50, 3))
    gray = fit_images(colour, SHAPE).numpy()
    assert gray.shape == (2, *SHAPE) and gray.dtype == np.uint8
    # ITU-R 601 luma, as tf.image.rgb_to_grayscale weighs the channels.
    np.testing.assert_allclose(gray, round(0.2989 * 200 + 0.5870 * 100 + 0.1140 * 50), atol=1)


def test_images_already_of_the_export_size_pass_unchanged():
    images = _images(3)
    np.testing.assert_array_equal(fit_images(images, SHAPE), images)


def test_the_index_holds_the_unit_length_representations_of_x_train(exported, encoder, tmp_path):
    model, _ = exported
    path, x_train, y_train = _npz(tmp_path / "data.npz")
    index = ImageIndex.build(encoder, path)
    h = np.asarray(model(x_train.astype(np.float32) / 255.0))
    np.testing.assert_allclose(
        index.representations, h / np.linalg.norm(h, axis=1, keepdims=True), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(index.labels, y_train)
    assert index.split == "train" and list(index.sources[:2]) == ["x_train[0]", "x_train[1]"]


def test_the_test_split_of_an_npz_is_indexed_when_asked(encoder, tmp_path):
    index = ImageIndex.build(encoder, _npz(tmp_path / "data.npz")[0], split="test")
    assert len(index) == 5 and index.split == "test" and index.sources[0] == "x_test[0]"


def test_query_ranks_by_cosine_similarity_as_numpy_does(encoder, tmp_path):
    index = ImageIndex.build(encoder, _npz(tmp_path / "data.npz")[0])
    queries = _RNG.normal(size=(3, index.representations.shape[1])).astype(np.float32) * [[1.0], [5.0], [0.1]]
    indices, similarities = index.query(queries, k=7)
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ index.representations.T
    expected = np.argsort(-cosine, axis=1)[:, :7]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(similarities, np.take_along_axis(cosine, expected, axis=1), rtol=1e-5)


def test_a_query_asks_for_at_most_the_whole_index_and_at_least_one_image(encoder, tmp_path):
    index = ImageIndex.build(encoder, _npz(tmp_path / "data.npz", count=4)[0])
    indices, _ = index.query(index.representations[:1], k=10)
    assert indices.shape == (1, 4) and indices[0, 0] == 0  # an indexed image is its own nearest
    with pytest.raises(UsageError, match="k must be >= 1"):
        index.query(index.representations[:1], k=0)


def test_a_folder_is_indexed_recursively_and_what_does_not_decode_is_skipped(encoder, tmp_path):
    _folder(tmp_path, ["top.png", "a/one.png", "a/deeper/two.png"])
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("not an image")
    index = ImageIndex.build(encoder, tmp_path)
    assert list(index.sources) == ["top.png", "a/one.png", "a/deeper/two.png"]  # data.py's reading order
    assert index.split is None and list(index.labels) == [-1, -1, -1]


def test_the_images_found_are_read_back_from_the_folder_and_the_npz(encoder, tmp_path):
    images = _folder(tmp_path / "folder", ["x.png", "sub/y.png", "sub/z.png"])
    index = ImageIndex.build(encoder, tmp_path / "folder")
    np.testing.assert_array_equal(index.images(np.asarray([[2, 0]])), [[images["sub/z.png"], images["x.png"]]])
    path, x_train, _ = _npz(tmp_path / "data.npz")
    index = ImageIndex.build(encoder, path)
    np.testing.assert_array_equal(index.images(np.asarray([7, 3, 7])), x_train[[7, 3, 7]])


def test_the_cache_is_read_back_while_the_export_and_the_images_are_unchanged(encoder, tmp_path, monkeypatch):
    _folder(tmp_path / "images", ["a.png", "b.png"])
    built = cached_index(encoder, tmp_path / "images", tmp_path / "index.npz")

    def no_build(*args, **kwargs):
        raise AssertionError("the index was built again")

    monkeypatch.setattr(ImageIndex, "build", no_build)
    read = cached_index(encoder, tmp_path / "images", tmp_path / "index.npz")
    np.testing.assert_array_equal(read.representations, built.representations)
    assert list(read.sources) == list(built.sources) and read.key == built.key and read.origin == built.origin


def test_the_cache_is_rebuilt_when_an_image_is_added_or_changed(encoder, tmp_path):
    _folder(tmp_path / "images", ["a.png", "b.png"])
    first = cached_index(encoder, tmp_path / "images", tmp_path / "index.npz")
    _folder(tmp_path / "images", ["c/new.png"])
    second = cached_index(encoder, tmp_path / "images", tmp_path / "index.npz")
    assert len(first) == 2 and len(second) == 3 and second.key != first.key
    changed = tmp_path / "images" / "a.png"
    changed.write_bytes(tf.io.encode_png(_images(1)[0]).numpy())
    os.utime(changed, ns=(1, 1))  # another modification time, even on a coarse clock
    third = cached_index(encoder, tmp_path / "images", tmp_path / "index.npz")
    assert third.key != second.key
    assert not np.allclose(third.representations[0], second.representations[0])
    assert ImageIndex.load(tmp_path / "index.npz").key == third.key


def test_the_cache_is_rebuilt_for_another_export(encoder, tmp_path):
    _folder(tmp_path / "images", ["a.png", "b.png"])
    first = cached_index(encoder, tmp_path / "images", tmp_path / "index.npz")
    other = ExportedEncoder(_export(tmp_path / "other", seed=1)[1])
    second = cached_index(other, tmp_path / "images", tmp_path / "index.npz")
    assert second.key == index_key(other, tmp_path / "images") != first.key
    assert not np.allclose(second.representations, first.representations)


def test_other_weights_in_the_same_place_change_the_fingerprint(tmp_path):
    """The weight shards enter by size and time only: a shard replaced by one of the same
    size and time still changes the fingerprint, through the CRC32Cs of variables.index."""
    model, first = _export(tmp_path / "a", seed=0)
    model.set_weights([weights + 1.0 for weights in model.get_weights()])
    second = export_encoder(model, tmp_path / "b", SHAPE)
    before = ExportedEncoder(first).fingerprint
    for name in ("variables.index", "variables.data-00000-of-00001"):
        old, new = pathlib.Path(first) / "variables" / name, pathlib.Path(second) / "variables" / name
        times = old.stat()
        new.replace(old)
        os.utime(old, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert ExportedEncoder(first).fingerprint != before


def test_the_npz_split_is_part_of_the_key(encoder, tmp_path):
    path = _npz(tmp_path / "data.npz")[0]
    assert index_key(encoder, path, "train") != index_key(encoder, path, "test")


def test_a_damaged_cache_is_rebuilt(encoder, tmp_path):
    _folder(tmp_path / "images", ["a.png"])
    (tmp_path / "index.npz").write_bytes(b"half an index")
    assert len(cached_index(encoder, tmp_path / "images", tmp_path / "index.npz")) == 1
    assert ImageIndex.load(tmp_path / "index.npz").sources[0] == "a.png"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "no images to index under"),
    ],
)
def test_nothing_to_index_is_a_usage_error(encoder, tmp_path, make, message):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UsageError, match=message):
        ImageIndex.build(encoder, make(tmp_path))


def test_an_export_of_any_size_without_a_card_is_a_usage_error(exported, tmp_path):
    copy = shutil.copytree(exported[1], tmp_path / "export")
    (copy / METADATA_FILE).unlink()
    with pytest.raises(UsageError, match="takes images of any size, and no image_shape in its model_card.json"):
        ExportedEncoder(copy)


def test_an_export_that_is_not_there_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        ExportedEncoder(tmp_path / "missing")
    with pytest.raises(UsageError, match="holds no SavedModel"):
        ExportedEncoder(tmp_path)


def test_a_query_file_that_is_missing_or_not_an_image_is_a_usage_error(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(UsageError, match="does not exist"):
        read_images([tmp_path / "missing.png"], SHAPE)
    with pytest.raises(UsageError, match="cannot be read"):
        read_images([tmp_path / "notes.jpg"], SHAPE)


def test_query_files_are_read_at_the_export_size(tmp_path):
    (tmp_path / "big.png").write_bytes(tf.io.encode_png(_images(1, (64, 48, 3))[0]).numpy())
    assert read_images([tmp_path / "big.png"], SHAPE).shape == (1, *SHAPE)


def test_the_neighbours_figure_has_a_row_per_query_titled_with_similarities(tmp_path):
    similarities = np.asarray([[0.9, 0.5], [0.8, -0.25]])
    figure = plot_neighbours(_images(2), _images(4).reshape(2, 2, *SHAPE), similarities, path=None)
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["query", "0.900", "0.500", "query", "0.800", "-0.250"]
    plot_neighbours(_images(2), _images(4).reshape(2, 2, *SHAPE), similarities, path=tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
