"""Image data sets from TFDS, Keras-layout `.npz` files, image folders or the embedded
MNIST sample, as `tf.data` pipelines of (uint8 image [H, W, C], int64 label).

Unlabelled images carry the label -1. Pretraining batches are shuffled, batched with
`drop_remainder` (NT-Xent wants a fixed batch), cached in memory when they fit, and
prefetched. The two views are made by the model's `train_step`, on the accelerator
when there is one.
"""

from __future__ import annotations

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
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
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


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _decode(path: tf.Tensor, channels: int, size: tuple[int, int]) -> tf.Tensor:
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    image = tf.image.resize(image, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _probe_images(files: list[pathlib.Path]) -> tuple[tuple[int, int], int]:
    """Size of the first readable image, and 3 channels if any of the first few has colour."""
    size, channels = None, 1
    for path in files[:64]:
        try:
            image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            continue
        size = size or (int(image.shape[0]), int(image.shape[1]))
        channels = 3 if image.shape[-1] >= 3 else channels
    if size is None:
        raise UsageError(f"none of the first images under {files[0].parent} can be decoded; check the files")
    return size, channels


def _folder_split(files: list[pathlib.Path], labels: list[int], channels: int, size: tuple[int, int]) -> Split:
    """The decoded images of `files`. Unreadable files are skipped rather than ending the run.

    A split that fits in memory is decoded once, here: pretraining would cache it anyway,
    and this way the count is exact and the skipped files are reported.
    """
    paths = tf.data.Dataset.from_tensor_slices(([str(p) for p in files], np.asarray(labels, np.int64)))
    images = paths.map(lambda p, y: (_decode(p, channels, size), y), num_parallel_calls=_AUTOTUNE).ignore_errors()
    if len(files) * size[0] * size[1] * channels > CACHE_LIMIT_BYTES:
        _log.warning("%d files under %s; unreadable ones will be skipped as they are met", len(files), files[0].parent)
        return Split(images, len(files))
    batches = list(images.batch(4096).as_numpy_iterator())
    decoded = np.concatenate([x for x, _ in batches]) if batches else np.zeros((0, *size, channels), np.uint8)
    decoded_labels = np.concatenate([y for _, y in batches]) if batches else np.zeros((0,), np.int64)
    skipped = len(files) - len(decoded)
    if skipped:
        _log.warning("skipped %d of %d image files that cannot be decoded", skipped, len(files))
    return Split(tf.data.Dataset.from_tensor_slices((decoded, decoded_labels)), len(decoded))


def _load_folder(root: pathlib.Path, image_size: int | None) -> ImageData:
    """`root/train/<class>/*` (+ optional `root/test/<class>/*`), `root/<class>/*`, or a
    flat folder of unlabelled images."""
    train_root = root / "train" if (root / "train").is_dir() else root
    class_dirs = sorted(d for d in train_root.iterdir() if d.is_dir())
    class_names = tuple(d.name for d in class_dirs if _image_files(d))
    if class_names:
        train_files, train_labels = _labelled_files(train_root, class_names)
    else:
        train_files = _image_files(train_root)
        train_labels = [UNLABELED] * len(train_files)
    if not train_files:
        raise UsageError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}; point dataset at an image folder"
        )
    native, channels = _probe_images(train_files)
    size = (image_size, image_size) if image_size else native
    test = None
    if (root / "test").is_dir() and class_names:
        test_files, test_labels = _labelled_files(root / "test", class_names)
        test = _folder_split(test_files, test_labels, channels, size) if test_files else None
    return ImageData(
        name=str(root),
        image_shape=(*size, channels),
        train=_folder_split(train_files, train_labels, channels, size),
        test=test,
        class_names=class_names,
    )


def _labelled_files(root: pathlib.Path, class_names: tuple[str, ...]) -> tuple[list[pathlib.Path], list[int]]:
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = _image_files(root / name) if (root / name).is_dir() else []
        files += found
        labels += [label] * len(found)
    return files, labels


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
