"""Exporting an encoder for apps without this package: a SavedModel that any TensorFlow or
Keras app loads (`tf.saved_model.load`, `keras.layers.TFSMLayer`) to embed images or to
fine-tune the encoder, with the encoder as a `.keras` file beside it where plain Keras can
load that, and optionally as TFLite. docs/export.md shows an app doing each.

A SavedModel is code: load exports only from sources you trust.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf import batch_norm, storage
from contrastive_tf.backbones import batch_norm_layers
from contrastive_tf.data import to_unit_range
from contrastive_tf.errors import UsageError
from contrastive_tf.run_folder import ENCODER_FILE, METADATA_FILE, TFLITE_FILE

_log = logging.getLogger(__name__)

# Written last where a folder cannot be renamed into place (GCS): a SavedModel without it
# is incomplete, and no loader takes it for one.
_MARKER = "saved_model.pb"
# The endpoint that runs batch norm in training mode, for TFSMLayer's call_training_endpoint.
TRAIN_ENDPOINT = "train_float"
SIGNATURES = {
    "serving_default": "uint8 images [B, H, W, C] in [0, 255] -> {representation: float32 [B, D]}",
    "serve_float": "float32 images [B, H, W, C] in [0, 1] -> the same",
    TRAIN_ENDPOINT: "as serve_float, with batch norm in training mode (the batch's statistics, its moving "
    "averages updated): TFSMLayer's call_training_endpoint",
}
# What the TFLite model is compared with the SavedModel on when no images are given.
_NOISE_IMAGES = 8


def accepts_any_size(encoder: keras.Model, channels: int) -> bool:
    """Whether `encoder` computes h from images of any height and width: whether it traces
    with both unknown and h's width known. Global pooling does; pooling over a fixed grid
    (small_cnn's pooling_grid > 1) or flattening a feature map does not."""
    spec = tf.TensorSpec((None, None, None, channels), tf.float32)
    try:
        traced = tf.function(lambda images: encoder(images, training=False)).get_concrete_function(spec)
    except (ValueError, TypeError, tf.errors.OpError):
        return False
    return traced.structured_outputs.shape[-1] is not None


def non_keras_operations(encoder: keras.Model) -> list[str]:
    """The classes in `encoder` (itself, its layers and operations, nested models' too) that
    are not Keras' own, by name; a Lambda counts, since Keras' safe mode refuses its code.
    Plain Keras loads the encoder's `.keras` file without this package when there are none,
    as for every encoder of `encoders` (whose fused batch norm is saved as Keras' own)."""
    found = {encoder, *_operations(encoder)}
    foreign = (
        op
        for op in found
        if isinstance(op, keras.layers.Lambda)
        or not (type(op).__module__.startswith("keras.") or isinstance(op, batch_norm.BatchNormalization))
    )
    return sorted({type(op).__name__ for op in foreign})


def check_export_target(export_dir: str | os.PathLike, overwrite: bool) -> storage.Location:
    """The absolute export path; raises UsageError if it exists and `overwrite` is False."""
    target = storage.location(export_dir)
    if isinstance(target, pathlib.Path):
        target = target.resolve()
    if storage.exists(target) and not overwrite:
        raise UsageError(
            f"export directory {target} already exists; set overwrite (--overwrite) to replace it, or choose another"
        )
    return target


def export_encoder(
    encoder: keras.Model,
    export_dir: str | os.PathLike,
    image_shape: tuple[int, int, int],
    overwrite: bool = False,
    metadata: dict | None = None,
    tflite: bool = False,
    sample_images: np.ndarray | tf.Tensor | None = None,
) -> storage.Location:
    """Writes `encoder` as a SavedModel at `export_dir` and returns the path.

    Signatures (`SIGNATURES`): serving_default (uint8 images), serve_float (float32 in
    [0, 1]) and train_float (serve_float in training mode, for fine-tuning). They take
    images of any height and width when `accepts_any_size`, else of `image_shape` only.

    Beside the SavedModel: `model_card.json`, `metadata` (JSON-serialisable) and what the
    export says about itself (image size, signatures, files); `encoder.keras` when plain
    Keras can load it (`non_keras_operations`); and with `tflite`, `encoder.tflite`
    (serve_float computing in float32), whose size and largest difference from the
    SavedModel's output on `sample_images` (uint8, or float in [0, 1]; default: 8 images
    of uniform noise) go to the card and the log.

    Everything is written to a temporary local folder and moved into place (see
    `storage.publish_directory`), so a crash never leaves a half-written export that is
    taken for a whole one.

    Raises:
        UsageError: `export_dir` exists and `overwrite` is False.
    """
    target = check_export_target(export_dir, overwrite)
    storage.makedirs(storage.parent(target))
    height, width, channels = image_shape
    any_size = accepts_any_size(encoder, channels)
    spec = tf.TensorSpec((None, None, None, channels) if any_size else (None, *image_shape), tf.float32, "images")
    foreign = non_keras_operations(encoder)
    card = {
        **(metadata or {}),
        "image_shape": list(image_shape),
        "image_size": f"any height and width (trained at {height}x{width})"
        if any_size
        else f"{height}x{width} only: {encoder.name} does not run on images of unknown size",
        "signatures": SIGNATURES,
        "keras_file": None if foreign else ENCODER_FILE,
    }
    if foreign:
        card["keras_file_missing"] = (
            f"{', '.join(foreign)}: not Keras' own, so plain Keras cannot load it; fine-tune through TFSMLayer"
        )
    # Beside the target when local, for a rename on the same disk.
    beside = target.parent if isinstance(target, pathlib.Path) else None
    staged = pathlib.Path(tempfile.mkdtemp(prefix=f".{storage.basename(target)}.tmp-", dir=beside))
    try:
        _write_saved_model(encoder, staged, spec)
        if not foreign:
            _keras_copy(encoder, channels if any_size else None).save(staged / ENCODER_FILE)
        if tflite:
            card["tflite"] = _write_tflite(encoder, staged, spec, image_shape, sample_images)
        (staged / METADATA_FILE).write_text(json.dumps(card, indent=2, default=str))
        storage.publish_directory(staged, target, _MARKER)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return target


def _write_saved_model(encoder: keras.Model, folder: pathlib.Path, spec: tf.TensorSpec) -> None:
    def representation(images):
        return {"representation": tf.cast(encoder(to_unit_range(images), training=False), tf.float32)}

    def train(images):
        # The app's own replica context applies when it runs, not this one: an all-reduce
        # traced here would add nothing, and its custom gradient makes every load warn.
        with _local_batch_statistics(encoder):
            return {"representation": tf.cast(encoder(images, training=True), tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.add_endpoint(
        "serving_default", representation, input_signature=[tf.TensorSpec(spec.shape, tf.uint8, "images")]
    )
    archive.add_endpoint("serve_float", representation, input_signature=[spec])
    archive.add_endpoint(TRAIN_ENDPOINT, train, input_signature=[spec])
    archive.write_out(str(folder), verbose=False)


def _write_tflite(
    encoder: keras.Model,
    staged: pathlib.Path,
    spec: tf.TensorSpec,
    image_shape: tuple[int, int, int],
    sample_images: np.ndarray | tf.Tensor | None,
) -> dict:
    """Converts serve_float to `TFLITE_FILE` in `staged` and says how it compares with the
    SavedModel there."""
    layers = [operation for operation in _operations(encoder) if isinstance(operation, keras.layers.Layer)]
    if all(layer.compute_dtype == "float32" for layer in layers):
        flatbuffer = _convert_to_tflite(staged)
    else:  # TFLite's kernels have no bfloat16 or float16: a float32 copy converts
        twin = keras.models.clone_model(encoder)
        twin.set_weights(encoder.get_weights())
        for operation in _operations(twin):
            if isinstance(operation, keras.layers.Layer):
                operation.dtype_policy = "float32"
        with tempfile.TemporaryDirectory() as folder:
            _write_saved_model(twin, pathlib.Path(folder), spec)
            flatbuffer = _convert_to_tflite(pathlib.Path(folder))
    (staged / TFLITE_FILE).write_bytes(flatbuffer)

    if sample_images is None:
        images = np.random.default_rng(0).random((_NOISE_IMAGES, *image_shape), dtype=np.float32)
        compared_on = f"{_NOISE_IMAGES} images of uniform noise"
    else:
        images = to_unit_range(tf.convert_to_tensor(sample_images)).numpy()
        compared_on = f"{len(images)} images given to the export"
    saved = tf.saved_model.load(str(staged)).signatures["serve_float"](images=tf.constant(images))["representation"]
    with warnings.catch_warnings():
        # It points to LiteRT's own package, which this one does not need.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    lite = interpreter.get_signature_runner("serve_float")(images=images)["representation"]
    report = {
        "file": TFLITE_FILE,
        "bytes": len(flatbuffer),
        "signature": "serve_float, computing in float32",
        "max_abs_difference": float(np.abs(lite - saved.numpy()).max()),
        "max_abs_representation": float(np.abs(saved.numpy()).max()),
        "compared_on": compared_on,
    }
    _log.info(
        "%s: %.1f kB; on %s its representations differ from the SavedModel's by at most %.2g (|h| up to %.3g)",
        TFLITE_FILE, len(flatbuffer) / 1000, compared_on, report["max_abs_difference"],
        report["max_abs_representation"],
    )  # fmt: skip
    return report


def _convert_to_tflite(saved_model: pathlib.Path) -> bytes:
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serve_float"]).convert()


def _keras_copy(encoder: keras.Model, any_size_channels: int | None) -> keras.Model:
    """`encoder` with the same weights and Keras' own batch norm (see
    `batch_norm.as_keras_layers`), taking images of any height and width when
    `any_size_channels` is given."""
    images = keras.Input((None, None, any_size_channels), name="images") if any_size_channels else None
    copy = keras.models.clone_model(
        encoder, input_tensors=images, clone_function=batch_norm.as_keras_layers, recursive=True
    )
    copy.set_weights(encoder.get_weights())
    return copy


def _operations(model: keras.Model) -> Iterator[keras.Operation]:
    """The layers and operations of `model`, and those of the models nested in it."""
    for operation in getattr(model, "operations", None) or model.layers:
        yield operation
        if isinstance(operation, keras.Model):
            yield from _operations(operation)


@contextlib.contextmanager
def _local_batch_statistics(encoder: keras.Model) -> Iterator[None]:
    """Batch norm in `encoder` computes its statistics over the batch it is given, not
    across replicas, while in the block."""
    synchronized = [layer for layer in batch_norm_layers(encoder) if layer.synchronized]
    for layer in synchronized:
        layer.synchronized = False
    try:
        yield
    finally:
        for layer in synchronized:
            layer.synchronized = True
