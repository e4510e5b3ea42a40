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
import importlib.resources
import logging
import os
import pathlib
import socket

import numpy as np
import tensorflow as tf

from contrastive_tf.errors import UsageError

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


# TFDS name -> (labelled train split, test split, extra unlabelled split or None).
TFDS_DATASETS = {
    "mnist": ("train", "test", None),
    "fashion_mnist": ("train", "test", None),
    "cifar10": ("train", "test", None),
    "cifar100": ("train", "test", None),
    "stl10": ("train", "test", "unlabelled"),
    # Needs a prepared copy (TFDS cannot download ImageNet); images are resized to image_size.
    "imagenet2012": ("train", "validation", None),
}
SAMPLE = "sample"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")  # any case; GIF: the first frame
# Image formats the folder loader does not read, named when skipped rather than called "not
# images": TensorFlow cannot decode TIFF, HEIC or AVIF, and its JPEG XL decoder is untested here.
UNREAD_IMAGE_EXTENSIONS = (".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl")
UNLABELED = -1
# Pipelines whose decoded images take less than this stay in memory after one pass.
CACHE_LIMIT_BYTES = 4 * 2**30
_log = logging.getLogger(__name__)
_AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Split:
    """One split: a `tf.data.Dataset` of (uint8 image, int64 label) and its size."""

    dataset: tf.data.Dataset
    num_examples: int


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
    """

    name: str
    image_shape: tuple[int, int, int]
    train: Split
    test: Split | None = None
    unlabeled: Split | None = None
    class_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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


def load_data(
    dataset: str = SAMPLE,
    data_dir: str | None = None,
    image_size: int | None = None,
) -> ImageData:
    """Loads `dataset`: "sample", a TFDS name, a `.npz` path, or an image-folder path.

    Args:
        dataset: what to load. A path is anything with a path separator or that exists.
        data_dir: TFDS data directory (named data sets only).
        image_size: resize every image to this square size; None keeps the native
            size (for folders: the size of the first image).

    Raises:
        UsageError: unknown name, missing path, malformed file, or a named data set
            that is not prepared on a machine that cannot download it.
    """
    if dataset == SAMPLE:
        data = _load_npz(sample_path(), name=SAMPLE)
    elif dataset in TFDS_DATASETS:
        data = _load_tfds(dataset, data_dir)
    elif os.sep in dataset or dataset.endswith(".npz") or os.path.exists(dataset):
        path = pathlib.Path(dataset).expanduser()
        if not path.exists():
            raise UsageError(f"dataset path {dataset} does not exist; check the path or use a TFDS name")
        data = _load_npz(path, name=dataset) if path.is_file() else _load_folder(path, image_size)
    else:
        names = ", ".join([SAMPLE, *TFDS_DATASETS])
        raise UsageError(
            f"unknown dataset {dataset!r}; choose one of {names}, or a path to a .npz file or image folder"
        )
    if image_size is not None and data.image_shape[:2] != (image_size, image_size):
        data = _resized(data, image_size)
    return data


def _resized(data: ImageData, size: int) -> ImageData:
    def resize(image, label):
        image = tf.image.resize(image, [size, size], antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

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


def _load_npz(path: pathlib.Path, name: str) -> ImageData:
    """A Keras-layout .npz: x_train [, y_train, x_test, y_test, class_names]."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
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
_ANIMATED_WEBP = "animated WebP (TensorFlow cannot decode it)"
_OUTSIDE_SPLITS = "outside train/ and test/"
_TEST_OUTSIDE_CLASSES = "in test/ outside the classes of train/"
_TEST_UNUSED = "in test/ while train/ has no classes"
# The images whose size and colour decide those of a folder's data set.
_PROBED_FILES = 64


def _list_folder(
    folder: pathlib.Path, skipped: collections.Counter, seen: set[tuple[int, int]]
) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """The image files and the subfolders directly in `folder`, by name, symlinks followed.

    Everything else is counted in `skipped` by reason. A folder already read yields nothing,
    so a symlink back to an ancestor cannot loop.
    """
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
        path, suffix = folder / entry.name, os.path.splitext(entry.name)[1].lower()
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError:  # e.g. a symlink to itself
            skipped[_UNREADABLE] += 1
            continue
        if entry.name.startswith("."):
            skipped[_HIDDEN] += 1
        elif is_dir:
            folders.append(path)
        elif not is_file:
            skipped[_BROKEN_LINK if entry.is_symlink() else _NOT_IMAGE] += 1
        elif suffix in IMAGE_EXTENSIONS:
            images.append(path)
        elif suffix in UNREAD_IMAGE_EXTENSIONS:
            skipped[f"{suffix} (not read; convert to PNG or JPEG)"] += 1
        else:
            skipped[_NOT_IMAGE] += 1
    return images, folders


def image_files(folder: pathlib.Path, skipped: collections.Counter, seen: set[tuple[int, int]]) -> list[pathlib.Path]:
    """Every image file under `folder` at any depth: its own first, then each subfolder's by name."""
    images, folders = _list_folder(folder, skipped, seen)
    for subfolder in folders:
        images += image_files(subfolder, skipped, seen)
    return images


@dataclasses.dataclass
class _FolderLayout:
    """What one folder holds: its files in reading order, their labels, and how that was decided."""

    files: list[pathlib.Path]
    labels: list[int]
    class_names: tuple[str, ...]
    description: str
    mixed: bool  # images at the top and in subfolders: worth a warning


def _layout(folder: pathlib.Path, skipped: collections.Counter, seen: set[tuple[int, int]]) -> _FolderLayout:
    """Class folders when every image sits below a first-level subfolder and there are at
    least two such subfolders (a class's images may be nested below its folder); otherwise
    one unlabelled set, read recursively."""
    top, folders = _list_folder(folder, skipped, seen)
    below = {subfolder.name: image_files(subfolder, skipped, seen) for subfolder in folders}
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


def _is_animated_webp(contents: tf.Tensor) -> tf.Tensor:
    """Whether encoded bytes are an animated WebP: RIFF....WEBPVP8X with flag bit 1 set."""
    header = tf.strings.join([tf.strings.substr(contents, 0, 21), b"\0" * 21])  # padded: substr needs the bytes
    flags = tf.io.decode_raw(tf.strings.substr(header, 20, 1), tf.uint8)[0]
    return tf.logical_and(
        tf.equal(tf.strings.substr(header, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(header, 8, 8), b"WEBPVP8X"),
        tf.not_equal(tf.bitwise.bitwise_and(flags, 2), 0),
    )


def _read_image(path: tf.Tensor) -> tf.Tensor:
    """The image (first frame) in the file at `path`: uint8 [H, W, C], C its own 1 to 4."""
    contents = tf.io.read_file(path)
    # TensorFlow 2.21 corrupts memory decoding an animated WebP, whatever the file is called.
    refuse = tf.debugging.Assert(tf.logical_not(_is_animated_webp(contents)), [_ANIMATED_WEBP])
    with tf.control_dependencies([refuse]):
        return tf.io.decode_image(contents, expand_animations=False)


def _decode(path: tf.Tensor, channels: int, size: tuple[int, int]) -> tf.Tensor:
    """The image at `path` as uint8 [*size, channels]; alpha is dropped, colour and gray converted.

    Converting here rather than asking the decoder for `channels` is what lets BMP, GIF and
    WebP (whose decoders refuse channels=1) join a grayscale set.
    """
    image = _read_image(path)
    colour = tf.shape(image)[-1] >= 3
    if channels == 3:
        image = tf.cond(colour, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))
    else:
        image = tf.cond(colour, lambda: tf.image.rgb_to_grayscale(image[..., :3]), lambda: image[..., :1])
    image = tf.image.resize(tf.ensure_shape(image, [None, None, channels]), size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def why_unreadable(path: pathlib.Path) -> str:
    """The reason a file that failed to decode is skipped, for the log line."""
    try:
        with open(path, "rb") as file:
            header = file.read(21)
    except OSError:
        return _UNREADABLE
    if header[:4] == b"RIFF" and header[8:16] == b"WEBPVP8X" and len(header) == 21 and header[20] & 2:
        return _ANIMATED_WEBP
    return _UNDECODABLE


def _probe_images(files: list[pathlib.Path], root: pathlib.Path) -> tuple[tuple[int, int], int]:
    """Size of the first readable image, and 3 channels if any of the first few has colour."""
    size, channels = None, 1
    for path in files[:_PROBED_FILES]:
        try:
            image = _read_image(tf.constant(str(path)))
        except tf.errors.OpError:
            continue
        size = size or (int(image.shape[0]), int(image.shape[1]))
        channels = 3 if image.shape[-1] >= 3 else channels
    if size is None:
        raise UsageError(
            f"none of the first {min(len(files), _PROBED_FILES)} image(s) under {root} can be decoded; check the files"
        )
    return size, channels


def read_image_files(
    files: list[pathlib.Path], labels: list[int], channels: int, size: tuple[int, int]
) -> tuple[Split, list[pathlib.Path], bool]:
    """The decodable images of `files`, the files that are not, and whether the split streams.

    Every file is decoded once here, so the count is exact and no image is dropped unsaid.
    A split that fits under CACHE_LIMIT_BYTES keeps those images in memory; a larger one
    keeps only the paths and decodes them again each epoch, in the same order.
    """
    paths, labels = np.asarray([str(p) for p in files], dtype=str), np.asarray(labels, np.int64)
    indexed = tf.data.Dataset.from_tensor_slices((np.arange(len(files)), paths, labels))
    streams = len(files) * size[0] * size[1] * channels > CACHE_LIMIT_BYTES
    if streams:
        readable = indexed.map(lambda i, p, y: (i, tf.shape(_read_image(p))), num_parallel_calls=_AUTOTUNE)
        kept = np.asarray([i for i, _ in readable.ignore_errors().as_numpy_iterator()], np.int64)
        dataset = tf.data.Dataset.from_tensor_slices((paths[kept], labels[kept])).map(
            lambda p, y: (_decode(p, channels, size), y), num_parallel_calls=_AUTOTUNE
        )
    else:
        decoded = indexed.map(lambda i, p, y: (i, _decode(p, channels, size)), num_parallel_calls=_AUTOTUNE)
        batches = list(decoded.ignore_errors().batch(4096).as_numpy_iterator())
        kept = np.concatenate([i for i, _ in batches]) if batches else np.zeros((0,), np.int64)
        images = np.concatenate([x for _, x in batches]) if batches else np.zeros((0, *size, channels), np.uint8)
        dataset = tf.data.Dataset.from_tensor_slices((images, labels[kept]))
    failed = [files[i] for i in sorted(set(range(len(files))) - set(kept.tolist()))]
    return Split(dataset, len(kept)), failed, streams


def _load_folder(root: pathlib.Path, image_size: int | None) -> ImageData:
    """An image folder, its layout decided from the whole tree and told in one log line.

    `root/train/` (+ optional `root/test/`) holds the splits; a folder (or `train/`) whose
    images all sit below two or more first-level subfolders is class folders; any other is
    one unlabelled set, read recursively.
    """
    skipped: collections.Counter = collections.Counter()
    seen: set[tuple[int, int]] = set()
    test_files: list[pathlib.Path] = []
    test_labels: list[int] = []
    if (root / "train").is_dir():
        top, folders = _list_folder(root, skipped, seen)
        skipped[_OUTSIDE_SPLITS] += len(top)
        for folder in folders:
            if folder.name not in ("train", "test"):
                skipped[_OUTSIDE_SPLITS] += len(image_files(folder, skipped, seen))
        train = _layout(root / "train", skipped, seen)
        if (root / "test").is_dir() and train.class_names:
            top, folders = _list_folder(root / "test", skipped, seen)
            skipped[_TEST_OUTSIDE_CLASSES] += len(top)
            for folder in folders:
                images = image_files(folder, skipped, seen)
                if folder.name in train.class_names:
                    test_files += images
                    test_labels += [train.class_names.index(folder.name)] * len(images)
                else:
                    skipped[_TEST_OUTSIDE_CLASSES] += len(images)
        elif (root / "test").is_dir():
            skipped[_TEST_UNUSED] += len(image_files(root / "test", skipped, seen))
        description = f"{train.description} in train/{' and test/' if (root / 'test').is_dir() else ''}"
    else:
        train = _layout(root, skipped, seen)
        description = train.description
    if not train.files:
        raise UsageError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root} ({skipped_summary(skipped)}); "
            "point dataset at an image folder"
        )
    native, channels = _probe_images(train.files, root)
    size = (image_size, image_size) if image_size else native
    train_split, failed, streams = read_image_files(train.files, train.labels, channels, size)
    test_split = None
    if test_files:
        test_split, failed_test, _ = read_image_files(test_files, test_labels, channels, size)
        failed += failed_test
    skipped.update(why_unreadable(path) for path in failed)
    count = f"{train_split.num_examples} images"
    if test_split is not None:
        count = f"{train_split.num_examples} train + {test_split.num_examples} test images"
    if streams:
        count += ", streamed from disk"
    line = f"image folder {root}: {description}, {count}; {skipped_summary(skipped)}"
    _log.log(logging.WARNING if +skipped or train.mixed else logging.INFO, line)
    return ImageData(
        name=str(root),
        image_shape=(*size, channels),
        train=train_split,
        test=test_split,
        class_names=train.class_names,
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


def _load_tfds(name: str, data_dir: str | None) -> ImageData:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared() and not _can_reach_tfds_servers():
        where = data_dir or "the default TFDS folder (~/tensorflow_datasets)"
        raise UsageError(
            f"{name} is not in {where} and this machine cannot download it; set data_dir to a folder "
            f"with a prepared copy, or dataset to a local .npz file or image folder"
        )
    builder.download_and_prepare()
    train_split, test_split, unlabeled_split = TFDS_DATASETS[name]
    splits = builder.info.splits

    def split(split_name: str | None) -> Split | None:
        if split_name is None:
            return None
        dataset = builder.as_dataset(split=split_name, as_supervised=True, shuffle_files=False)
        count = int(dataset.cardinality())
        return Split(dataset, count if count >= 0 else splits[split_name].num_examples)

    return ImageData(
        name=name,
        image_shape=tuple(builder.info.features["image"].shape),
        train=split(train_split),
        test=split(test_split),
        unlabeled=split(unlabeled_split),
        class_names=tuple(builder.info.features["label"].names),
    )


def fits_in_memory(split: Split, image_shape: tuple[int, int, int], limit: int = CACHE_LIMIT_BYTES) -> bool:
    return split.num_examples * int(np.prod(image_shape)) <= limit


def pretraining_batches(
    data: ImageData,
    batch_size: int,
    seed: int | None = None,
    with_labels: bool = True,
) -> tf.data.Dataset:
    """Shuffled, fixed-size batches of `data.pretrain` for `SimCLR.fit`.

    Yields (images, labels) when `with_labels` and the training images are labelled
    (for the online probe), else images alone.

    Raises:
        UsageError: when the data holds fewer images than one batch.
    """
    split = data.pretrain
    if split.num_examples < batch_size:
        raise UsageError(
            f"{data.name} has {split.num_examples} images, fewer than one batch of {batch_size}; lower batch_size"
        )
    dataset = split.dataset
    if fits_in_memory(split, data.image_shape):
        dataset = dataset.cache()
    dataset = dataset.shuffle(min(split.num_examples, 50_000), seed=seed, reshuffle_each_iteration=True)
    if not (with_labels and data.num_classes and data.unlabeled is None):
        dataset = dataset.map(lambda image, label: image, num_parallel_calls=_AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(_AUTOTUNE)
