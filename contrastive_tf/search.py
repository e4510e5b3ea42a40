"""Image search on an exported encoder: an index of the representations of a set of
images, queried by cosine similarity.

The encoder is read through the SavedModel's `serving_default` signature alone (uint8
images in, `{"representation": h}` out), as any app would read an export; its input size
comes from the signature (for one that takes any size, the size the model card says the
encoder was trained at), and images of another size or colour are converted to it.

Example:
    >>> encoder = ExportedEncoder("runs/simclr/export")
    >>> index = cached_index(encoder, "photos/", "runs/search/index.npz")
    >>> indices, similarities = index.query(encoder(read_images(["query.jpg"], encoder.image_shape)), k=10)
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import json
import logging
import os
import pathlib

import numpy as np
import tensorflow as tf

from contrastive_tf.data import UNLABELED, image_files, load_data, read_image_files, skipped_summary, why_unreadable
from contrastive_tf.errors import UsageError
from contrastive_tf.run_folder import ENCODER_FILE, METADATA_FILE, TFLITE_FILE
from contrastive_tf.storage import write_atomically

# Bump when what an index file holds changes: older files are then rebuilt, not misread.
INDEX_FORMAT = 1
# The index cache's default name in an output folder.
INDEX_FILE = "index.npz"
# The grid of each query's nearest images.
NEIGHBOURS_FIGURE = "neighbours.png"
# The arrays of an .npz that can be indexed: x_train or x_test.
NPZ_SPLITS = ("train", "test")
_log = logging.getLogger(__name__)


def fit_images(images: np.ndarray | tf.Tensor, image_shape: tuple[int, int, int]) -> tf.Tensor:
    """uint8 images [B, H, W, C] brought to `image_shape` (height, width, channels):
    colour made gray or gray made colour, alpha dropped, then resized (antialiased, rounded).
    Images already of that shape pass through unchanged."""
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8 or images.shape.rank != 4:
        raise UsageError(f"images must be uint8 [B, H, W, C], got {images.dtype.name} of shape {images.shape}")
    height, width, channels = image_shape
    if images.shape[-1] != channels:
        if channels == 1:
            images = tf.image.rgb_to_grayscale(images[..., :3]) if images.shape[-1] >= 3 else images[..., :1]
        else:
            images = images[..., :3] if images.shape[-1] >= 3 else tf.tile(images[..., :1], [1, 1, 1, 3])
    if tuple(images.shape[1:3]) != (height, width):
        resized = tf.image.resize(images, (height, width), antialias=True)
        images = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    return images


class ExportedEncoder:
    """An export's `serving_default` signature as a function from uint8 images to
    representations, with nothing from this package's model classes.

    Args:
        export_dir: a SavedModel directory written by `export_encoder` (or any SavedModel
            whose `serving_default` takes uint8 [B, H, W, C] and returns `representation`,
            or one output; of any size, with a `model_card.json` giving its `image_shape`).
        batch_size: images per call of the signature.

    Attributes:
        image_shape: (height, width, channels) the images go in at: the signature's, or
            for one that takes any size, the training size.

    Raises:
        UsageError: no SavedModel at `export_dir`, a signature that does not take uint8
            images, or one of any size without a card saying the training size.

    Example:
        >>> encoder = ExportedEncoder("runs/simclr/export")
        >>> h = encoder(np.zeros((4, 28, 28, 1), np.uint8))  # float32 [4, D]
    """

    def __init__(self, export_dir: str | os.PathLike, batch_size: int = 256):
        path = pathlib.Path(export_dir).expanduser()
        if not (path / "saved_model.pb").is_file():
            hint = f"; its export is {path / 'export'}" if (path / "export" / "saved_model.pb").is_file() else ""
            where = "does not exist" if not path.exists() else "holds no SavedModel (saved_model.pb)"
            raise UsageError(f"encoder path {path} {where}; pass the export directory a pretraining run wrote{hint}")
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        self.path, self.batch_size = path.resolve(), batch_size
        # Kept: the signature's variables belong to the loaded object.
        self._loaded = tf.saved_model.load(str(self.path))
        if "serving_default" not in self._loaded.signatures:
            raise UsageError(f"the SavedModel at {path} has no serving_default signature")
        self._serve = self._loaded.signatures["serving_default"]
        (self._input_name, spec), *others = self._serve.structured_input_signature[1].items()
        shape = tuple(spec.shape[1:])
        if others or spec.dtype != tf.uint8 or len(shape) != 3 or shape[-1] is None:
            raise UsageError(
                f"the serving_default signature of {path} takes {self._serve.structured_input_signature[1]}; "
                "expected one input of uint8 images [B, H, W, C]"
            )
        if None in shape:  # any size: the size it learnt at embeds best
            shape = _trained_shape(path)
        self.image_shape: tuple[int, int, int] = tuple(int(d) for d in shape)

    def __call__(self, images: np.ndarray | tf.Tensor) -> np.ndarray:
        """float32 representations [N, D] of uint8 images [N, H, W, C] of any size."""
        images = fit_images(images, self.image_shape)
        batches = [
            self._represent(images[start : start + self.batch_size])
            for start in range(0, int(images.shape[0]), self.batch_size)
        ]
        return np.concatenate(batches) if batches else np.zeros((0, self.dimension), np.float32)

    def _represent(self, batch: tf.Tensor) -> np.ndarray:
        outputs = self._serve(**{self._input_name: batch})
        output = outputs["representation"] if "representation" in outputs else next(iter(outputs.values()))
        return np.asarray(output, np.float32)

    @functools.cached_property
    def dimension(self) -> int:
        """D, the size of a representation."""
        return self._represent(tf.zeros((1, *self.image_shape), tf.uint8)).shape[-1]

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the export's files: another export, or the same one rewritten with other
        weights, has another fingerprint. The weights' shards (`variables.data-*`, most of an
        export's bytes) and the copies of the weights beside them (`encoder.keras`,
        `encoder.tflite`) enter by size and modification time only: their contents are
        covered by `variables.index`, which holds every tensor's CRC32C and is hashed whole,
        so a large export is fingerprinted in milliseconds."""
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(self.path).as_posix()}\0".encode())
            if file.name.startswith("variables.data-") or file.name in (ENCODER_FILE, TFLITE_FILE):
                status = file.stat()
                digest.update(f"{status.st_size}\0{status.st_mtime_ns}\0".encode())
                continue
            with open(file, "rb") as contents:
                for block in iter(lambda: contents.read(2**20), b""):
                    digest.update(block)
        return digest.hexdigest()


def _trained_shape(export_dir: pathlib.Path) -> tuple[int, int, int]:
    card = export_dir / METADATA_FILE
    shape = json.loads(card.read_text()).get("image_shape") if card.is_file() else None
    if not shape:
        raise UsageError(
            f"{export_dir} takes images of any size, and no image_shape in its {METADATA_FILE} says which size "
            "its encoder was trained at; pass an export a pretraining run wrote"
        )
    return tuple(shape)


def read_images(paths: list[str | os.PathLike], image_shape: tuple[int, int, int]) -> np.ndarray:
    """The image files at `paths` as uint8 [N, *image_shape], decoded and converted as
    image folders are (first frame of a GIF, alpha dropped, resized).

    Raises:
        UsageError: a path that is missing, is a folder, or cannot be decoded as an image.
    """
    files = [pathlib.Path(path).expanduser() for path in paths]
    for file in files:
        if not file.exists():
            raise UsageError(f"image file {file} does not exist")
        if not file.is_file():
            raise UsageError(f"{file} is not a file; pass image files")
    split, failed = read_image_files(files, [UNLABELED] * len(files), image_shape[2], image_shape[:2])
    if failed:
        reason = why_unreadable(failed[0])
        raise UsageError(f"image file {failed[0]} cannot be read ({reason}); pass a PNG, JPEG, BMP, GIF or WebP file")
    return np.concatenate([images for images, _ in split.dataset.batch(len(files)).as_numpy_iterator()])


def _is_npz(source: pathlib.Path) -> bool:
    return source.is_file()


def _folder_files(root: pathlib.Path) -> tuple[list[pathlib.Path], collections.Counter]:
    """Every image file under `root`, at any depth (as `load_data` reads folders), and what was skipped."""
    skipped: collections.Counter = collections.Counter()
    return [pathlib.Path(file) for file in image_files(root, skipped, set())], skipped


def _check_source(source: str | os.PathLike, split: str) -> pathlib.Path:
    path = pathlib.Path(source).expanduser()
    if not path.exists():
        raise UsageError(f"index source {path} does not exist; pass an image folder or a .npz file")
    if split not in NPZ_SPLITS:
        raise UsageError(f"split must be one of {', '.join(NPZ_SPLITS)}, got {split!r}")
    return path.resolve()


def index_key(encoder: ExportedEncoder, source: str | os.PathLike, split: str = "train") -> str:
    """What an index of `source` by `encoder` depends on, as a SHA-256: the index format,
    the export's fingerprint (see `ExportedEncoder.fingerprint`) and input shape, and for a
    folder the relative path, size and modification time of every image file under it, for
    a .npz file its size, modification time and `split`. A cached index whose key differs
    is rebuilt."""
    path = _check_source(source, split)
    digest = hashlib.sha256(f"{INDEX_FORMAT}\0{encoder.fingerprint}\0{encoder.image_shape}\0".encode())
    if _is_npz(path):
        digest.update(f"npz\0{split}\0".encode())
        files, root = [path], path.parent
    else:
        files, root = _folder_files(path)[0], path
    for file in files:
        status = file.stat()
        digest.update(f"{file.relative_to(root).as_posix()}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (rows of zeros stay zero)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


@dataclasses.dataclass
class ImageIndex:
    """The unit-length representations of a set of images, and where each image is.

    Attributes:
        representations: float32 [N, D], each row of unit length.
        sources: [N] where each image is: its path relative to `origin` (a folder), or
            `x_train[i]` / `x_test[i]` (a .npz).
        labels: int64 [N], the .npz labels; -1 for unlabelled images and for folders.
        class_names: the .npz's class names, or ().
        origin: the absolute path of the folder or .npz file indexed.
        split: the .npz split indexed ("train": x_train, "test": x_test); None for a folder.
        image_shape: (height, width, channels) of the encoder that built it.
        key: `index_key` of the encoder and source it was built from.
    """

    representations: np.ndarray
    sources: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    origin: str
    split: str | None
    image_shape: tuple[int, int, int]
    key: str

    def __len__(self) -> int:
        return len(self.sources)

    @classmethod
    def build(cls, encoder: ExportedEncoder, source: str | os.PathLike, split: str = "train") -> ImageIndex:
        """The index of every image under the folder `source` (read recursively; files
        that do not decode are skipped and logged), or of x_train (`split="train"`) or
        x_test (`split="test"`) of the Keras-layout .npz `source`.

        Raises:
            UsageError: a missing source, an .npz without that split, or no image to index.
        """
        path = _check_source(source, split)
        key = index_key(encoder, path, split)
        if _is_npz(path):
            data = load_data(str(path))
            images = data.train if split == "train" else data.test
            if images is None:
                raise UsageError(f"{path} has no x_test array; index split train, or save the images as x_test")
            if not images.num_examples:
                raise UsageError(f"{path} has no images in x_{split}; pass an .npz with images to search")
            sources = np.asarray([f"x_{split}[{i}]" for i in range(images.num_examples)], str)
            class_names = data.class_names
        else:
            files, skipped = _folder_files(path)
            height, width, channels = encoder.image_shape
            images, failed = read_image_files(files, [UNLABELED] * len(files), channels, (height, width))
            skipped.update(why_unreadable(file) for file in failed)
            unread = set(failed)
            sources = np.asarray([file.relative_to(path).as_posix() for file in files if file not in unread], str)
            class_names = ()
            if not len(sources):
                raise UsageError(
                    f"no images to index under {path} ({skipped_summary(skipped)}); pass a folder of images"
                )
            _log.info("indexing %s: %d images; %s", path, len(sources), skipped_summary(skipped))
        representations, labels = [], []
        for batch, batch_labels in images.dataset.batch(encoder.batch_size).as_numpy_iterator():
            representations.append(encoder(batch))
            labels.append(batch_labels)
        return cls(
            representations=_unit_rows(np.concatenate(representations)),
            sources=sources,
            labels=np.concatenate(labels).astype(np.int64),
            class_names=tuple(class_names),
            origin=str(path),
            split=split if _is_npz(path) else None,
            image_shape=encoder.image_shape,
            key=key,
        )

    def query(self, representations: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The `k` images nearest each query by cosine similarity, most similar first.

        Args:
            representations: the queries' representations [Q, D] (any length; they are normalised).
            k: neighbours per query; at most the size of the index.

        Returns:
            indices int64 [Q, min(k, N)] into the index, and their cosine similarities float32
            in [-1, 1]; ties keep index order.
        """
        if k < 1:
            raise UsageError(f"k must be >= 1, got {k}")
        queries = _unit_rows(np.atleast_2d(representations))
        if queries.shape[1] != self.representations.shape[1]:
            raise UsageError(
                f"queries have {queries.shape[1]} dimensions but the index has {self.representations.shape[1]}"
            )
        similarities = queries @ self.representations.T
        indices = np.argsort(-similarities, axis=1, kind="stable")[:, : min(k, len(self))]
        return indices.astype(np.int64), np.take_along_axis(similarities, indices, axis=1)

    def captions(self, indices: np.ndarray) -> np.ndarray:
        """What to call the images at `indices` (any shape): the source, and its class when labelled."""

        def caption(i: int) -> str:
            label = int(self.labels[i])
            named = 0 <= label < len(self.class_names)
            return f"{self.sources[i]} ({self.class_names[label]})" if named else str(self.sources[i])

        return np.vectorize(caption, otypes=[str])(np.asarray(indices))

    def images(self, indices: np.ndarray) -> np.ndarray:
        """The images at `indices` (any shape), read again from the source at the index's
        image size: uint8 [*indices.shape, H, W, C]."""
        indices = np.asarray(indices, np.int64)
        wanted = np.unique(indices)
        if self.split is None:
            files = [pathlib.Path(self.origin) / self.sources[i] for i in wanted]
            found = read_images(files, self.image_shape)
        else:
            data = load_data(self.origin)
            split = data.train if self.split == "train" else data.test
            chosen = split.dataset.enumerate().filter(lambda i, item: tf.reduce_any(tf.equal(i, wanted)))
            found = fit_images(np.stack([image for _, (image, _) in chosen.as_numpy_iterator()]), self.image_shape)
        return np.asarray(found)[np.searchsorted(wanted, indices)]

    def save(self, path: str | os.PathLike) -> pathlib.Path:
        """Writes the index to `path` (an .npz, replaced atomically) and returns the path."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "format": np.asarray(INDEX_FORMAT),
            "representations": self.representations,
            "sources": np.asarray(self.sources, str),
            "labels": self.labels,
            "class_names": np.asarray(self.class_names, str),
            "origin": np.asarray(self.origin),
            "split": np.asarray(self.split or ""),
            "image_shape": np.asarray(self.image_shape, np.int64),
            "key": np.asarray(self.key),
        }
        write_atomically(path, lambda staged: np.savez(staged, **arrays))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageIndex:
        """The index saved at `path`.

        Raises:
            UsageError: `path` is not an index file of this format.
        """
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            if int(arrays["format"]) != INDEX_FORMAT:
                raise ValueError(f"format {int(arrays['format'])}, expected {INDEX_FORMAT}")
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(f"{path} is not an image index ({error}); delete it to rebuild") from None
        return cls(
            representations=arrays["representations"],
            sources=arrays["sources"],
            labels=arrays["labels"],
            class_names=tuple(str(name) for name in arrays["class_names"]),
            origin=str(arrays["origin"]),
            split=str(arrays["split"]) or None,
            image_shape=tuple(int(d) for d in arrays["image_shape"]),
            key=str(arrays["key"]),
        )


def cached_index(
    encoder: ExportedEncoder, source: str | os.PathLike, cache_file: str | os.PathLike, split: str = "train"
) -> ImageIndex:
    """The index of `source` (see `ImageIndex.build`) read from `cache_file` when its key
    (`index_key`) is still that of `encoder` and `source`; otherwise built and saved there."""
    key = index_key(encoder, source, split)
    cache_file = pathlib.Path(cache_file)
    if cache_file.exists():
        try:
            cached = ImageIndex.load(cache_file)
        except UsageError as error:
            _log.warning("rebuilding the index: %s", error)
        else:
            if cached.key == key:
                _log.info("index of %s: %d images, read from %s", cached.origin, len(cached), cache_file)
                return cached
            _log.info("the export or the images changed since %s was built; rebuilding it", cache_file)
    index = ImageIndex.build(encoder, source, split)
    index.save(cache_file)
    _log.info("index of %s: %d images, saved to %s", index.origin, len(index), cache_file)
    return index
