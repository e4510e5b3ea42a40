"""Exporting an encoder as a SavedModel that any TensorFlow or Keras app can load
without this package (`tf.saved_model.load` or `keras.layers.TFSMLayer`).

A SavedModel is code: load exports only from sources you trust.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import keras
import tensorflow as tf

from contrastive_tf import storage
from contrastive_tf.data import to_unit_range
from contrastive_tf.errors import UsageError
from contrastive_tf.run_folder import METADATA_FILE

# Written last where a folder cannot be renamed into place (GCS): a SavedModel without it
# is incomplete, and no loader takes it for one.
_MARKER = "saved_model.pb"


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
) -> storage.Location:
    """Writes `encoder` as a SavedModel at `export_dir` and returns the path.

    Signatures:
        serving_default: uint8 images [B, H, W, C] in [0, 255] -> {"representation": float32 [B, D]}.
        serve_float: float32 images in [0, 1] -> the same.

    The SavedModel is written to a temporary local folder and moved into place (see
    `storage.publish_directory`), so a crash never leaves a half-written export that is
    taken for a whole one. `metadata` (JSON-serialisable) is written beside it as
    `model_card.json`.

    Raises:
        UsageError: `export_dir` exists and `overwrite` is False.
    """
    target = check_export_target(export_dir, overwrite)
    storage.makedirs(storage.parent(target))

    def representation(images):
        return {"representation": tf.cast(encoder(to_unit_range(images), training=False), tf.float32)}

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.add_endpoint(
        "serving_default",
        representation,
        input_signature=[tf.TensorSpec((None, *image_shape), tf.uint8, name="images")],
    )
    archive.add_endpoint(
        "serve_float", representation, input_signature=[tf.TensorSpec((None, *image_shape), tf.float32, name="images")]
    )
    # Beside the target when local, for a rename on the same disk.
    beside = target.parent if isinstance(target, pathlib.Path) else None
    staged = pathlib.Path(tempfile.mkdtemp(prefix=f".{storage.basename(target)}.tmp-", dir=beside))
    try:
        archive.write_out(str(staged), verbose=False)
        if metadata is not None:
            (staged / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str))
        storage.publish_directory(staged, target, _MARKER)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return target
