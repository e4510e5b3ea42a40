"""Image data sets from TFDS, Keras-layout `.npz` files, image folders or the embedded
MNIST sample, as `tf.data` pipelines of (uint8 image [H, W, C], int64 label).

Unlabelled images carry the label -1. Pretraining batches are shuffled, batched with
`drop_remainder` (NT-Xent wants a fixed batch), cached in memory when they fit, and
prefetched. The two views are made by the model's `train_step`, on the accelerator
when there is one.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import importlib.resources
import io
import logging
import os
import pathlib
import re
import socket
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from contrastive_tf import storage
from contrastive_tf.errors import UsageError, reason
from contrastive_tf.host_crops import ANIMATED_WEBP, center_crop, decode_image, random_crops, with_channels
from contrastive_tf.streams import Stream, attempted, file_stream, tfds_stream
from contrastive_tf.tfrecords import IMAGE_KEY, LABEL_KEY, RecordLayout, is_tfrecords, read_shards

# Images up to this size are digit-sized (MNIST's 28 px): a small CNN suits them.
DIGIT_MAX_SIZE = 28
# Images up to this size are CIFAR-sized: SimCLR's CIFAR recipe gives them a ResNet stem
# without downsampling and no blur.
SMALL_MAX_SIZE = 32


def is_small(image_shape: tuple[int, ...]) -> bool:
    """Whether images of `image_shape` (height, width, ...) are CIFAR-sized or smaller."""
    return max(image_shape[:2]) <= SMALL_MAX_SIZE


def to_unit_range(images: tf.Tensor) -> tf.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; float images pass through unchanged."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


# A TFDS builder's name: `name`, `name/config`, `name:version`, `name/config:version`.
_TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*(/[\w.-]+)?(:[\d.*]+)?")
# Data sets the docs name; any other TFDS builder loads too.
TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "stl10", "imagenet2012")
# TFDS builders whose test split has no labels: their evaluations use "validation".
_UNLABELLED_TEST_SPLITS = ("imagenet2012", "imagenet2012_subset", "imagenet2012_real")
SAMPLE = "sample"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")  # any case; GIF: the first frame
# Image formats the folder loader does not read, named when skipped rather than called "not
# images": TensorFlow cannot decode TIFF, HEIC or AVIF, and its JPEG XL decoder is untested here.
UNREAD_IMAGE_EXTENSIONS = (".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl")
UNLABELED = -1
# Pipelines whose decoded images take less than this stay in memory after one pass.
CACHE_LIMIT_BYTES = 4 * 2**30
# Folders of at most this many images (CIFAR-10's 50,000 among them) are decoded once before
# training: exact counts, no decoding per epoch. Larger ones stream, so that the first step
# comes after listing them (60,000 small JPEGs take ~14 s to decode on 2 cores).
EAGER_DECODE_MAX_FILES = 60_000
# Images whose longest side is less than image_size / MAX_UPSCALING are refused as too small.
MAX_UPSCALING = 4
_log = logging.getLogger(__name__)
_AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Split:
    """One split: a `tf.data.Dataset` of (uint8 image, int64 label) and its size."""

    dataset: tf.data.Dataset
    num_examples: int
    # Set when the split is read from its files on every pass rather than held decoded, with
    # the function that turns an encoded image into one of `dataset`'s images.
    stream: Stream | None = None
    decode: Callable[[tf.Tensor], tf.Tensor] | None = None


@dataclasses.dataclass
class ImageData:
    """A data set ready for pretraining and evaluation.

    Attributes:
        name: what the user asked for (a TFDS name, a path, or "sample").
        image_shape: (height, width, channels) of every image.
        train: the labelled (or, for a flat folder, unlabelled) training split.
        test: held-out labelled split, or None.
        unlabeled: extra unlabelled images for pretraining only (STL-10), or None.
        class_names: names of the classes; empty when there are no labels.
        host_crops: whether pretraining crops each view from the original image on the
            host (`host_crops`): images larger than image_shape, streamed. Then `train` and
            `test` yield the images' centre crops (87.5%), as evaluation takes them.
    """

    name: str
    image_shape: tuple[int, int, int]
    train: Split
    test: Split | None = None
    unlabeled: Split | None = None
    class_names: tuple[str, ...] = ()
    host_crops: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def skipped_files(self) -> int:
        """Files the streamed splits skipped so far as unreadable (0 for splits held in memory,
        whose unreadable files were counted when they were loaded)."""
        splits = (self.train, self.test, self.unlabeled)
        return sum(split.stream.skipped.total for split in splits if split is not None and split.stream is not None)

    @property
    def pretrain(self) -> Split:
        """Everything pretraining may use: train, plus the unlabelled split if any."""
        if self.unlabeled is None:
            return self.train
        return Split(
            self.unlabeled.dataset.concatenate(self.train.dataset),
            self.unlabeled.num_examples + self.train.num_examples,
        )


def sample_path() -> pathlib.Path:
    """The MNIST sample shipped with the package: 10,000 train and 2,000 test digits."""
    return pathlib.Path(str(importlib.resources.files("contrastive_tf") / "sample" / "mnist_sample.npz"))


# The keyword arguments of `load_data` that say how to read a source beyond its name.
SOURCE_OPTIONS = ("train_split", "test_split", "image_key", "label_key", "record_order", "num_classes")


def load_data(
    dataset: str = SAMPLE,
    data_dir: str | None = None,
    image_size: int | None = None,
    *,
    train_split: str | None = None,
    test_split: str | None = None,
    image_key: str = IMAGE_KEY,
    label_key: str = LABEL_KEY,
    record_order: str = "uniform",
    num_classes: int | None = None,
) -> ImageData:
    """Loads `dataset`: "sample", a `.npz` path, an image-folder path, a glob of TFRecord
    shards, or the name of any TFDS builder (`name`, `name/config`, `name:version`).

    Args:
        dataset: what to load. A path is anything with a path separator or that exists;
            a `.npz` and TFRecords may be on any `tf.io.gfile` filesystem (gs://).
        data_dir: TFDS data directory (TFDS names only; may be on gs://).
        image_size: images come out this square size; None keeps the native size (for
            folders: the size of the first image). Images larger than it are not squashed
            for pretraining: each view is cropped from the original (`ImageData.host_crops`).
        train_split: the TFDS split to pretrain on (default "train", else the first split).
        test_split: the TFDS split to evaluate on (default "test", else "validation"), or
            a glob of TFRecord shards.
        image_key, label_key: the Example keys of TFRecords' image bytes and class; an
            empty label_key reads them unlabelled.
        record_order: how TFRecord shards are read each epoch (`tfrecords.RECORD_ORDERS`):
            "uniform", a uniform permutation of all records, their places indexed first
            (one read of each record's length); "shards", unindexed, the shards in a new
            order interleaved through a shuffle buffer.
        num_classes: the classes of TFRecord labels (default: the largest label of the
            first shard + 1).

    Raises:
        UsageError: unknown name, missing path, malformed file, or a named data set
            that is not prepared on a machine that cannot download it.
    """
    if dataset == SAMPLE:
        data = _load_npz(sample_path(), name=SAMPLE)
    elif is_tfrecords(dataset):
        layout = RecordLayout(image_key, label_key or None)
        return _load_tfrecords(dataset, test_split, image_size, layout, record_order, num_classes)
    elif storage.is_remote(dataset):
        if not storage.exists(dataset):
            raise UsageError(f"dataset path {dataset} does not exist; check the path, the bucket and your access")
        remote = storage.location(dataset)
        data = _load_folder(remote, image_size) if storage.isdir(remote) else _load_npz(remote, name=dataset)
    elif os.path.exists(dataset) or not _TFDS_NAME.fullmatch(dataset):
        path = pathlib.Path(dataset).expanduser()
        if not path.exists():
            raise UsageError(f"dataset path {dataset} does not exist; check the path or use a TFDS name")
        data = _load_npz(path, name=dataset) if path.is_file() else _load_folder(path, image_size)
    else:
        data = _load_tfds(dataset, data_dir, image_size, train_split, test_split, record_order)
    if image_size is not None and data.image_shape[:2] != (image_size, image_size):
        data = _resized(data, image_size)
    return data


def _resized(data: ImageData, size: int) -> ImageData:
    def resize(image, label):
        return _resized_to(image, (size, size)), label

    def apply(split: Split | None) -> Split | None:
        if split is None:
            return None
        return Split(split.dataset.map(resize, num_parallel_calls=_AUTOTUNE), split.num_examples)

    return dataclasses.replace(
        data,
        image_shape=(size, size, data.image_shape[2]),
        train=apply(data.train),
        test=apply(data.test),
        unlabeled=apply(data.unlabeled),
    )


def _as_uint8_images(array: np.ndarray, key: str, path: pathlib.Path) -> np.ndarray:
    """Checks an image array from an .npz and brings it to uint8 [N, H, W, C]."""
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise UsageError(f"{path}: {key} has shape {array.shape}; expected [N, H, W] or [N, H, W, C] with C = 1 or 3")
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating) and array.size and 0 <= array.min() and array.max() <= 1:
        return np.round(array * 255).astype(np.uint8)
    raise UsageError(f"{path}: {key} has dtype {array.dtype}; expected uint8 in [0, 255] or float in [0, 1]")


def _as_labels(array: np.ndarray | None, count: int, key: str, path: pathlib.Path) -> np.ndarray:
    if array is None:
        return np.full([count], UNLABELED, np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise UsageError(f"{path}: {key} must be a 1-D integer array, got {array.dtype} {array.shape}")
    if len(array) != count:
        raise UsageError(f"{path}: {key} has {len(array)} labels for {count} images; they must match")
    return array.astype(np.int64)


def _load_npz(path: str | pathlib.Path, name: str) -> ImageData:
    """A Keras-layout .npz on any `tf.io.gfile` path: x_train [, y_train, x_test, y_test, class_names]."""
    try:
        with tf.io.gfile.GFile(str(path), "rb") as file:
            contents = io.BytesIO(file.read())
        with np.load(contents, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except tf.errors.OpError as error:
        raise UsageError(f"cannot read {path} ({reason(error)}); check the path and access") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"{path} is not a readable .npz file ({error}); pass a NumPy .npz archive") from None
    if "x_train" not in arrays:
        raise UsageError(
            f"{path} has no x_train array (found: {', '.join(arrays) or 'nothing'}); save images as x_train"
        )
    x_train = _as_uint8_images(arrays["x_train"], "x_train", path)
    y_train = _as_labels(arrays.get("y_train"), len(x_train), "y_train", path)
    test = None
    if "x_test" in arrays:
        x_test = _as_uint8_images(arrays["x_test"], "x_test", path)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise UsageError(f"{path}: x_test images are {x_test.shape[1:]} but x_train images are {x_train.shape[1:]}")
        y_test = _as_labels(arrays.get("y_test"), len(x_test), "y_test", path)
        test = Split(tf.data.Dataset.from_tensor_slices((x_test, y_test)), len(x_test))
    labelled = y_train[y_train != UNLABELED]
    if "class_names" in arrays:
        class_names = tuple(str(c) for c in arrays["class_names"])
    elif len(labelled):
        class_names = tuple(str(c) for c in range(int(labelled.max()) + 1))
    else:
        class_names = ()
    return ImageData(
        name=name,
        image_shape=tuple(int(d) for d in x_train.shape[1:]),
        train=Split(tf.data.Dataset.from_tensor_slices((x_train, y_train)), len(x_train)),
        test=test,
        class_names=class_names,
    )


# Why a file or folder is skipped, as the log line names it.
_HIDDEN = "hidden"
_NOT_IMAGE = "not images"
_BROKEN_LINK = "broken links"
_UNREADABLE = "unreadable"
_ALREADY_READ = "folders already read (symlink loops)"
_UNDECODABLE = "cannot be decoded"
_OUTSIDE_SPLITS = "outside train/ and test/"
_TEST_OUTSIDE_CLASSES = "in test/ outside the classes of train/"
_TEST_UNUSED = "in test/ while train/ has no classes"
# The images whose size and colour decide those of a folder's data set.
_PROBED_FILES = 64


def _list_remote_folder(folder: str, skipped: collections.Counter) -> tuple[list[str], list[str]]:
    """`_list_folder` on a `tf.io.gfile` filesystem (gs://): one listing per folder, an image
    known by its name (GCS marks folders with a trailing /; other entries without an image
    extension are asked whether they are folders)."""
    try:
        names = sorted(tf.io.gfile.listdir(folder))
    except tf.errors.OpError:
        skipped[_UNREADABLE] += 1
        return [], []
    images, folders = [], []
    for name in names:
        path, suffix = storage.join(folder, name.rstrip("/")), os.path.splitext(name.rstrip("/"))[1].lower()
        if name.startswith("."):
            skipped[_HIDDEN] += 1
        elif name.endswith("/") or (suffix not in IMAGE_EXTENSIONS and tf.io.gfile.isdir(path)):
            folders.append(path)
        elif suffix in IMAGE_EXTENSIONS:
            images.append(path)
        elif suffix in UNREAD_IMAGE_EXTENSIONS:
            skipped[f"{suffix} (not read; convert to PNG or JPEG)"] += 1
        else:
            skipped[_NOT_IMAGE] += 1
    return images, folders


def _list_folder(
    folder: storage.Location, skipped: collections.Counter, seen: set
) -> tuple[list[str], list[storage.Location]]:
    """The image files (paths as strings: a `pathlib.Path` each costs 50 us, seconds for a
    big folder) and the subfolders directly in `folder`, by name, symlinks followed.

    Everything else is counted in `skipped` by reason. A folder already read yields nothing,
    so a symlink back to an ancestor cannot loop.
    """
    if storage.is_remote(folder):
        return _list_remote_folder(folder, skipped)
    try:
        status = folder.stat()
        if (status.st_dev, status.st_ino) in seen:
            skipped[_ALREADY_READ] += 1
            return [], []
        seen.add((status.st_dev, status.st_ino))
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        skipped[_UNREADABLE] += 1
        return [], []
    images, folders = [], []
    for entry in entries:
        suffix = os.path.splitext(entry.name)[1].lower()
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError:  # e.g. a symlink to itself
            skipped[_UNREADABLE] += 1
            continue
        if entry.name.startswith("."):
            skipped[_HIDDEN] += 1
        elif is_dir:
            folders.append(folder / entry.name)
        elif not is_file:
            skipped[_BROKEN_LINK if entry.is_symlink() else _NOT_IMAGE] += 1
        elif suffix in IMAGE_EXTENSIONS:
            images.append(os.path.join(folder, entry.name))
        elif suffix in UNREAD_IMAGE_EXTENSIONS:
            skipped[f"{suffix} (not read; convert to PNG or JPEG)"] += 1
        else:
            skipped[_NOT_IMAGE] += 1
    return images, folders


def image_files(folder: storage.Location, skipped: collections.Counter, seen: set) -> list[str]:
    """Every image file under `folder` at any depth: its own first, then each subfolder's by name."""
    images, folders = _list_folder(folder, skipped, seen)
    for subfolder in folders:
        images += image_files(subfolder, skipped, seen)
    return images


@dataclasses.dataclass
class _FolderLayout:
    """What one folder holds: its files in reading order, their labels, and how that was decided."""

    files: list[str]
    labels: list[int]
    class_names: tuple[str, ...]
    description: str
    mixed: bool  # images at the top and in subfolders: worth a warning


def _layout(folder: storage.Location, skipped: collections.Counter, seen: set) -> _FolderLayout:
    """Class folders when every image sits below a first-level subfolder and there are at
    least two such subfolders (a class's images may be nested below its folder); otherwise
    one unlabelled set, read recursively."""
    top, folders = _list_folder(folder, skipped, seen)
    below = {storage.basename(subfolder): image_files(subfolder, skipped, seen) for subfolder in folders}
    below = {name: images for name, images in below.items() if images}
    if not top and len(below) >= 2:
        class_names = tuple(below)
        files = [path for name in class_names for path in below[name]]
        labels = [label for label, name in enumerate(class_names) for _ in below[name]]
        return _FolderLayout(files, labels, class_names, f"class folders ({len(class_names)} classes)", mixed=False)
    files = top + [path for images in below.values() for path in images]
    if top and below:
        where = f"images at the top and in {_plural(len(below), 'subfolder')}, read recursively"
    elif below:
        where = f"every image below {next(iter(below))}/, read recursively"
    else:
        where = "images at the top"
    return _FolderLayout(files, [UNLABELED] * len(files), (), f"unlabelled ({where})", mixed=bool(top and below))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _read_image(path: tf.Tensor) -> tf.Tensor:
    """The image (first frame) in the file at `path`: uint8 [H, W, C], C its own 1 to 4."""
    return decode_image(tf.io.read_file(path))


def _resized_to(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    image = tf.image.resize(image, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _squashed(contents: tf.Tensor, channels: int, size: tuple[int, int]) -> tf.Tensor:
    """The encoded image resized to `size` whatever its aspect, with `channels`."""
    return _resized_to(with_channels(decode_image(contents), channels), size)


def _decode(path: tf.Tensor, channels: int, size: tuple[int, int]) -> tf.Tensor:
    """The image at `path` as uint8 [*size, channels]; alpha is dropped, colour and gray converted.

    Converting here rather than asking the decoder for `channels` is what lets BMP, GIF and
    WebP (whose decoders refuse channels=1) join a grayscale set.
    """
    return _squashed(tf.io.read_file(path), channels, size)


def why_unreadable(path: str | pathlib.Path) -> str:
    """The reason a file that failed to decode is skipped, for the log line."""
    try:
        with tf.io.gfile.GFile(str(path), "rb") as file:
            header = file.read(21)
    except (OSError, tf.errors.OpError):
        return _UNREADABLE
    if header[:4] == b"RIFF" and header[8:16] == b"WEBPVP8X" and len(header) == 21 and header[20] & 2:
        return ANIMATED_WEBP
    return _UNDECODABLE


@dataclasses.dataclass
class _Probe:
    """What the first few images of a folder say about all of them."""

    size: tuple[int, int]  # the first readable image's (height, width)
    channels: int  # 3 if any probed image has colour, else 1
    largest_side: int  # the longest side among them


def _probe_images(files: list[str], root: storage.Location) -> _Probe:
    size, channels, largest = None, 1, 0
    for path in files[:_PROBED_FILES]:
        try:
            image = _read_image(tf.constant(str(path)))
        except tf.errors.OpError:
            continue
        size = size or (int(image.shape[0]), int(image.shape[1]))
        channels = 3 if image.shape[-1] >= 3 else channels
        largest = max(largest, int(image.shape[0]), int(image.shape[1]))
    if size is None:
        raise UsageError(
            f"none of the first {min(len(files), _PROBED_FILES)} image(s) under {root} can be decoded; check the files"
        )
    return _Probe(size, channels, largest)


def read_image_files(
    files: list[str | pathlib.Path], labels: list[int], channels: int, size: tuple[int, int]
) -> tuple[Split, list[str | pathlib.Path]]:
    """The decodable images of `files`, decoded once and held in memory, and the files that
    are not decodable: the count is exact and no image is dropped unsaid."""
    paths, labels = np.asarray([str(p) for p in files], dtype=str), np.asarray(labels, np.int64)
    indexed = tf.data.Dataset.from_tensor_slices((np.arange(len(files)), paths))
    decoded = indexed.map(lambda i, p: (i, _decode(p, channels, size)), num_parallel_calls=_AUTOTUNE)
    batches = list(decoded.ignore_errors().batch(4096).as_numpy_iterator())
    kept = np.concatenate([i for i, _ in batches]) if batches else np.zeros((0,), np.int64)
    images = np.concatenate([x for _, x in batches]) if batches else np.zeros((0, *size, channels), np.uint8)
    failed = [files[i] for i in sorted(set(range(len(files))) - set(kept.tolist()))]
    return Split(tf.data.Dataset.from_tensor_slices((images, labels[kept])), len(kept)), failed


def evaluation_decoder(host_crops: bool, image_shape: tuple[int, int, int]) -> Callable[[tf.Tensor], tf.Tensor]:
    """Encoded image -> uint8 `image_shape`: the centre crop where pretraining crops views
    from the originals (as SimCLR evaluates), else the whole image resized."""
    height, width, channels = image_shape
    if host_crops:
        return functools.partial(center_crop, size=height, channels=channels)
    return functools.partial(_squashed, channels=channels, size=(height, width))


def streamed_split(
    stream: Stream,
    decode: Callable[[tf.Tensor], tf.Tensor],
    image_shape: tuple[int, int, int],
    keep: np.ndarray | None = None,
) -> Split:
    """A split read from `stream` on every pass, in a fixed order, each image `decode`d from its
    encoded bytes to uint8 `image_shape`; the undecodable ones skipped and counted. `keep`
    (booleans, one per listed image) reads only those: a subset costs no decoding of the rest."""

    def image_and_label(source, label):
        encoded, label = stream.read(source, label)
        return decode(encoded), label

    sources = stream.in_order()
    if keep is not None:
        mask, listed = tf.constant(keep), len(keep)

        def kept(index, element):
            return (index < listed) & mask[tf.minimum(index, listed - 1)]

        sources = sources.enumerate().filter(kept).map(lambda _, element: element)
    fallback = (tf.zeros(image_shape, tf.uint8), tf.constant(UNLABELED, tf.int64))
    dataset = attempted(sources, image_and_label, fallback, stream.skipped)
    count = stream.num_examples if keep is None else int(keep.sum())
    return Split(dataset, count, stream, decode)


def streams_from_files(count: int, probe_pixels: int) -> bool:
    """Whether a split of `count` files of `probe_pixels` values each is read anew every epoch
    rather than decoded once before training."""
    return count > EAGER_DECODE_MAX_FILES or count * probe_pixels > CACHE_LIMIT_BYTES


def _too_small(largest_side: int, image_size: int | None, where: str) -> None:
    if image_size and largest_side * MAX_UPSCALING < image_size:
        raise UsageError(
            f"the images of {where} are at most {largest_side} px a side, too small for image_size "
            f"{image_size} (more than {MAX_UPSCALING}x upscaling); lower image_size or use larger images"
        )


def _folder_split(
    files: list[str], labels: list[int], probe: _Probe, size: tuple[int, int], host_crops: bool, where: str
) -> tuple[Split, list[str]]:
    """A folder split decoded once into memory (today's small sets), or streamed: when
    `host_crops` (its images are larger than image_size, and each view is cropped from the
    original) or there are too many to decode before the first step. Returns it and the files
    it could not decode."""
    if not (host_crops or streams_from_files(len(files), size[0] * size[1] * probe.channels)):
        return read_image_files(files, labels, probe.channels, size)
    stream = file_stream([str(path) for path in files], labels, where)
    shape = (*size, probe.channels)
    return streamed_split(stream, evaluation_decoder(host_crops, shape), shape), []


def _load_folder(root: storage.Location, image_size: int | None) -> ImageData:
    """An image folder, its layout decided from the whole tree and told in one log line.

    `root/train/` (+ optional `root/test/`) holds the splits; a folder (or `train/`) whose
    images all sit below two or more first-level subfolders is class folders; any other is
    one unlabelled set, read recursively.
    """
    skipped: collections.Counter = collections.Counter()
    seen: set[tuple[int, int]] = set()
    test_files: list[str] = []
    test_labels: list[int] = []
    train_dir, test_dir = storage.join(root, "train"), storage.join(root, "test")
    has_test = storage.isdir(test_dir)
    if storage.isdir(train_dir):
        top, folders = _list_folder(root, skipped, seen)
        skipped[_OUTSIDE_SPLITS] += len(top)
        for folder in folders:
            if storage.basename(folder) not in ("train", "test"):
                skipped[_OUTSIDE_SPLITS] += len(image_files(folder, skipped, seen))
        train = _layout(train_dir, skipped, seen)
        if has_test and train.class_names:
            top, folders = _list_folder(test_dir, skipped, seen)
            skipped[_TEST_OUTSIDE_CLASSES] += len(top)
            for folder in folders:
                images = image_files(folder, skipped, seen)
                if storage.basename(folder) in train.class_names:
                    test_files += images
                    test_labels += [train.class_names.index(storage.basename(folder))] * len(images)
                else:
                    skipped[_TEST_OUTSIDE_CLASSES] += len(images)
        elif has_test:
            skipped[_TEST_UNUSED] += len(image_files(test_dir, skipped, seen))
        description = f"{train.description} in train/{' and test/' if has_test else ''}"
    else:
        train = _layout(root, skipped, seen)
        description = train.description
    if not train.files:
        raise UsageError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root} ({skipped_summary(skipped)}); "
            "point dataset at an image folder"
        )
    probe = _probe_images(train.files, root)
    _too_small(probe.largest_side, image_size, str(root))
    size = (image_size, image_size) if image_size else probe.size
    host_crops = bool(image_size) and probe.largest_side > image_size
    train_split, failed = _folder_split(train.files, train.labels, probe, size, host_crops, f"{root} (train)")
    test_split = None
    if test_files:
        test_split, failed_test = _folder_split(test_files, test_labels, probe, size, host_crops, f"{root} (test)")
        failed += failed_test
    skipped.update(why_unreadable(path) for path in failed)
    count = f"{train_split.num_examples} images"
    if test_split is not None:
        count = f"{train_split.num_examples} train + {test_split.num_examples} test images"
    if host_crops:
        count += ", streamed, each view cropped from the original"
    elif train_split.stream is not None:
        count += ", streamed from disk"
    line = f"image folder {root}: {description}, {count}; {skipped_summary(skipped)}"
    _log.log(logging.WARNING if +skipped or train.mixed else logging.INFO, line)
    return ImageData(
        name=str(root),
        image_shape=(*size, probe.channels),
        train=train_split,
        test=test_split,
        class_names=train.class_names,
        host_crops=host_crops,
    )


def skipped_summary(skipped: collections.Counter) -> str:
    """'skipped 3: 2 not images, 1 hidden', most frequent reason first, or 'nothing skipped'."""
    counts = (+skipped).most_common()  # + drops the reasons counted zero times
    if not counts:
        return "nothing skipped"
    return f"skipped {sum(count for _, count in counts)}: " + ", ".join(f"{n} {reason}" for reason, n in counts)


def _can_reach_tfds_servers(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _tfds_builder(name: str, data_dir: str | None):
    """The TFDS builder `name` (`name/config:version`), prepared; UsageError when there is none."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise UsageError(
            f"unknown dataset {name!r}: not a TFDS builder, a path or {SAMPLE!r}; give a TFDS name (e.g. cifar10, "
            "imagenette/320px, food101:2.0.0), or a path to a .npz file, an image folder or TFRecord shards (a glob)"
        ) from None
    except (ValueError, AssertionError) as error:  # a config or version it does not have
        raise UsageError(f"TFDS cannot build {name}: {str(error).splitlines()[0]}") from None
    if not builder.is_prepared() and not _can_reach_tfds_servers():
        where = data_dir or "the default TFDS folder (~/tensorflow_datasets)"
        raise UsageError(
            f"{name} is not in {where} and this machine cannot download it; set data_dir to a folder "
            f"with a prepared copy, or dataset to a local .npz file or image folder"
        )
    builder.download_and_prepare()
    return builder


def _feature_key(features, kind, preferred: str) -> str | None:
    """The top-level feature of `kind`: `preferred` if it is one, else the first; None if none is."""
    keys = [key for key, feature in features.items() if isinstance(feature, kind)]
    return preferred if preferred in keys else next(iter(keys), None)


def _default_splits(name: str, splits: list[str]) -> tuple[str, str | None, str | None]:
    """(train, test, extra unlabelled) splits of a TFDS builder that names none."""
    train = "train" if "train" in splits else splits[0]
    unlabelled_test = name.split("/")[0].split(":")[0] in _UNLABELLED_TEST_SPLITS
    preferences = ("validation", "test") if unlabelled_test else ("test", "validation")
    test = next((split for split in preferences if split in splits and split != train), None)
    unlabelled = next((split for split in ("unlabelled", "unlabeled") if split in splits), None)
    return train, test, unlabelled


def _load_tfds(
    name: str,
    data_dir: str | None,
    image_size: int | None,
    train_split: str | None,
    test_split: str | None,
    record_order: str = "uniform",
) -> ImageData:
    """Any TFDS builder's images and labels, found in its features. Sets of fixed-size images
    that fit in memory are read as they are; others stream their encoded images, in
    `record_order`."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    features, splits = builder.info.features, list(builder.info.splits)
    image_key = _feature_key(features, tfds.features.Image, "image")
    if image_key is None:
        raise UsageError(f"{name} has no image feature (its features: {', '.join(features)}); use a data set of images")
    label_key = _feature_key(features, tfds.features.ClassLabel, "label")
    train, test, unlabelled = _default_splits(name, splits)
    if train_split or test_split:
        train, test, unlabelled = train_split or train, test_split or (test if test != train_split else None), None
    for split in (split for split in (train, test) if split is not None):
        # TFDS' split syntax: "train", "train[:10%]", "train+unlabelled".
        unknown = [part for part in split.split("+") if part.split("[")[0] not in splits]
        if unknown:
            raise UsageError(f"{name} has no split {unknown[0]!r}; its splits are {', '.join(splits)}")
    shape = tuple(features[image_key].shape)
    channels = shape[-1] or 3
    count = builder.info.splits[train].num_examples
    fixed = None not in shape[:2]
    if fixed:
        _too_small(max(shape[:2]), image_size, name)
    in_memory = fixed and count * int(np.prod(shape)) <= CACHE_LIMIT_BYTES
    if in_memory and (not image_size or max(shape[:2]) <= image_size):

        def labelled(example):
            return example[image_key], example[label_key] if label_key else tf.constant(UNLABELED, tf.int64)

        def split(split_name: str | None) -> Split | None:
            if split_name is None:
                return None
            dataset = builder.as_dataset(split=split_name, shuffle_files=False).map(labelled)
            return Split(dataset, builder.info.splits[split_name].num_examples)

        return ImageData(
            name=name,
            image_shape=shape,
            train=split(train),
            test=split(test),
            unlabeled=split(unlabelled),
            class_names=tuple(features[label_key].names) if label_key else (),
        )
    if not image_size and not fixed:
        raise UsageError(f"the images of {name} vary in size; set image_size (e.g. 224)")
    size = image_size or max(shape[:2])
    image_shape = (size, size, channels)
    host_crops = not fixed or max(shape[:2]) > size
    decode = evaluation_decoder(host_crops, image_shape)

    def streamed(split_name: str | None) -> Split | None:
        if split_name is None:
            return None
        stream = tfds_stream(builder, split_name, image_key, label_key, f"{name} ({split_name})", record_order)
        return streamed_split(stream, decode, image_shape)

    if unlabelled is not None:
        _log.warning("%s: pretraining streams only its %s split, not %s", name, train, unlabelled)
    return ImageData(
        name=name,
        image_shape=image_shape,
        train=streamed(train),
        test=streamed(test),
        class_names=tuple(features[label_key].names) if label_key else (),
        host_crops=host_crops,
    )


def _load_tfrecords(
    pattern: str,
    test_pattern: str | None,
    image_size: int | None,
    layout: RecordLayout,
    record_order: str,
    num_classes: int | None,
) -> ImageData:
    """TFRecord shards, streamed; the test split from `test_pattern` when given."""
    if image_size is None:
        raise UsageError(f"set image_size for the TFRecords {pattern} (e.g. 224): their images are not decoded first")
    train = read_shards(pattern, layout, record_order)
    _too_small(train.largest_side, image_size, pattern)
    host_crops = train.largest_side > image_size
    image_shape = (image_size, image_size, train.channels)
    decode = evaluation_decoder(host_crops, image_shape)
    test = None
    if test_pattern:
        test = streamed_split(read_shards(test_pattern, layout, record_order).stream, decode, image_shape)
    classes = num_classes or (train.largest_label + 1 if layout.label_key else 0)
    inferred = " (the first shard's largest label + 1; set num_classes if shards hold classes in order)"
    estimated = " (about: the first shard's count times the shards)" if record_order == "shards" else ""
    _log.info(
        "TFRecords %s: %d images%s%s, %d classes%s%s",
        pattern, train.stream.num_examples, estimated, f" + {test.num_examples} test" if test else "", classes,
        inferred if layout.label_key and not num_classes else "",
        ", each view cropped from the original" if host_crops else "",
    )  # fmt: skip
    return ImageData(
        name=pattern,
        image_shape=image_shape,
        train=streamed_split(train.stream, decode, image_shape),
        test=test,
        class_names=tuple(str(label) for label in range(classes)),
        host_crops=host_crops,
    )


def fits_in_memory(split: Split, image_shape: tuple[int, int, int], limit: int = CACHE_LIMIT_BYTES) -> bool:
    return split.num_examples * int(np.prod(image_shape)) <= limit


def pretraining_batches(
    data: ImageData,
    batch_size: int,
    seed: int | None = None,
    with_labels: bool = True,
    *,
    first_step: int = 0,
    epochs: int | None = 1,
    num_views: int = 2,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    shard: tuple[int, int] = (1, 0),
) -> tf.data.Dataset:
    """Shuffled, fixed-size batches of `data.pretrain` for `SimCLR.fit`, from step
    `first_step` on, for `epochs` epochs (None: endlessly), each epoch in a new order.

    Yields (images, labels) when `with_labels` and the training images are labelled
    (for the online probe), else images alone. Images are uint8 [B, H, W, C], except
    where `data.host_crops`: then each image's `num_views` views, cropped on the host from
    the original (`crop_scale`: their area range), uint8 [B, V, H, W, C].

    Args:
        shard: (count, index): a streamed split gives worker `index` every count-th image,
            so that each worker of a cluster reads only its own share of the files.

    Raises:
        UsageError: when the data holds fewer images than one batch.
    """
    split = data.pretrain
    if split.num_examples < batch_size:
        raise UsageError(
            f"{data.name} has {split.num_examples} images, fewer than one batch of {batch_size}; lower batch_size"
        )
    labelled = with_labels and data.num_classes and data.unlabeled is None
    if split.stream is not None:
        dataset = _streamed_images(data, split, seed or 0, first_step * batch_size, num_views, crop_scale, shard)
    else:
        dataset = split.dataset.cache() if fits_in_memory(split, data.image_shape) else split.dataset
        dataset = dataset.shuffle(min(split.num_examples, 50_000), seed=seed, reshuffle_each_iteration=True)
    if not labelled:
        dataset = dataset.map(lambda image, label: image, num_parallel_calls=_AUTOTUNE)
    batches = dataset.batch(batch_size, drop_remainder=True)
    if split.stream is None:
        batches = batches.repeat(epochs).skip(first_step)
    elif epochs is not None:
        batches = batches.take(epochs * (split.num_examples // batch_size) - first_step)
    if shard[0] > 1 and split.stream is not None:
        # Sharded by file already; tf.distribute must not shard the batches again.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        batches = batches.with_options(options)
    return batches.prefetch(_AUTOTUNE)


def sample_views(
    data: ImageData, count: int, crop_scale: tuple[float, float], seed: int = 0
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """The first `count` training images as evaluation sees them and, where `data.host_crops`,
    two views of each cropped on the host from its original ([count, 2, H, W, C]), else None."""
    if not data.host_crops:
        return next(iter(data.train.dataset.batch(count)))[0], None
    split, (height, _, channels) = data.train, data.image_shape

    def both(source, label, position):
        contents, _ = split.stream.read(source, label)
        key = tf.stack([tf.constant(seed, tf.int64), position])
        return split.decode(contents), random_crops(contents, 2, height, channels, crop_scale, key)

    sources = split.stream.in_order().take(4 * count).enumerate().map(lambda i, element: (*element, i))
    fallback = (tf.zeros(data.image_shape, tf.uint8), tf.zeros((2, *data.image_shape), tf.uint8))
    return next(iter(attempted(sources, both, fallback, split.stream.skipped).batch(count)))


def _streamed_images(
    data: ImageData,
    split: Split,
    seed: int,
    first: int,
    num_views: int,
    crop_scale: tuple[float, float],
    shard: tuple[int, int],
) -> tf.data.Dataset:
    """(image or views, label) from stream position `first` on, endlessly; the crops of the
    image at position p are drawn from the stateless seed (seed, p)."""
    stream, (height, _, channels) = split.stream, data.image_shape
    if data.host_crops:
        shape = (num_views, *data.image_shape)

        def decode(source, label, position):
            key = tf.stack([tf.constant(seed, tf.int64), position])
            encoded, label = stream.read(source, label)
            return random_crops(encoded, num_views, height, channels, crop_scale, key), label

    else:
        shape = data.image_shape

        def decode(source, label, position):
            encoded, label = stream.read(source, label)
            return split.decode(encoded), label

    fallback = (tf.zeros(shape, tf.uint8), tf.constant(UNLABELED, tf.int64))
    return attempted(stream.positions(seed, first, shard), decode, fallback, stream.skipped)
