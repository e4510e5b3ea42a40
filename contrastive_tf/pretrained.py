"""Encoders from a finished pretraining run, for evaluation and fine-tuning.

A run leaves two forms: the SavedModel export (any TensorFlow app can load it; its batch
norm is frozen in inference mode) and `simclr.keras` in its `--model_dir` (the whole
Keras model of its method: encoder, heads and augmentation, all trainable).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import keras

from contrastive_tf.errors import UsageError
from contrastive_tf.export import METADATA_FILE
from contrastive_tf.model import ContrastiveModel
from contrastive_tf.pretraining import MODEL_FILE


@dataclasses.dataclass
class Pretrained:
    """An encoder from float images in [0, 1] to the representation h.

    Attributes:
        encoder: the Keras model.
        image_shape: (height, width, channels) it takes.
        name: the encoder's name, for reports.
        metadata: what the run recorded about itself (configuration, probe figures).
        model: the whole pretraining model (any method) when it came from a `.keras` file,
            else None.
    """

    encoder: keras.Model
    image_shape: tuple[int, int, int]
    name: str
    metadata: dict
    model: ContrastiveModel | None = None


def load_pretrained(path: str | os.PathLike) -> Pretrained:
    """The encoder at `path`: an export directory, a pretraining `--model_dir`, or a
    `.keras` file. `.keras` files are loaded in Keras' safe mode; a SavedModel is code,
    so load exports only from sources you trust.

    Raises:
        UsageError: `path` is missing or holds neither form.
    """
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise UsageError(
            f"encoder path {path} does not exist; pass an export directory, a --model_dir or a .keras file"
        )
    if (path / "saved_model.pb").exists():
        return _from_export(path)
    keras_file = path / MODEL_FILE if path.is_dir() else path
    if keras_file.suffix != ".keras" or not keras_file.exists():
        raise UsageError(
            f"{path} holds no encoder; pass an export directory (with saved_model.pb), a pretraining "
            f"--model_dir (with {MODEL_FILE}) or a .keras file"
        )
    model = keras.saving.load_model(keras_file, safe_mode=True)
    whole = model if isinstance(model, ContrastiveModel) else None
    encoder = model.encoder if whole else model
    return Pretrained(encoder, tuple(encoder.input_shape[1:]), encoder.name, {}, whole)


def _from_export(path: pathlib.Path) -> Pretrained:
    metadata_file = path / METADATA_FILE
    metadata = json.loads(metadata_file.read_text()) if metadata_file.exists() else {}
    if "image_shape" not in metadata:
        raise UsageError(f"{path} does not say what image size it takes: its {METADATA_FILE} is missing")
    shape = tuple(metadata["image_shape"])
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serve_float")
    inputs = keras.Input(shape)
    name = metadata.get("encoder", path.name)
    encoder = keras.Model(inputs, layer(inputs)["representation"], name=name)
    return Pretrained(encoder, shape, name, metadata)
