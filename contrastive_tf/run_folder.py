"""What a run folder holds, each artefact named once, and the encoder read back from it.

A pretraining run leaves the encoder in two forms: the export (a SavedModel any TensorFlow
app can load to embed images or to fine-tune, with the encoder alone as a `.keras` file
beside it; see `export`) and `model.keras` in its model_dir (the whole Keras model of its
method: encoder, heads and augmentation, all trainable). Evaluations write their results
and figures into their own output folder. Every folder may be on any filesystem `storage`
reaches (gs:// too).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sys
import threading
import time

import keras
import tensorflow as tf

from contrastive_tf import storage
from contrastive_tf.errors import UsageError
from contrastive_tf.methods import ContrastiveModel

# A pretraining model_dir.
MODEL_FILE = "model.keras"
# Where runs made before version 0.2 saved the whole model; still read.
LEGACY_MODEL_FILES = ("simclr.keras",)
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
EXPORT_DIR = "export"
# The export's card: what the encoder takes and gives, how it was trained and scored.
METADATA_FILE = "model_card.json"
# Beside the SavedModel in an export: the encoder for plain Keras, and as TFLite.
ENCODER_FILE = "encoder.keras"
TFLITE_FILE = "encoder.tflite"
HISTORY_FILE = "history.csv"
# Held by the process training into the model_dir (see `RunLock`).
LOCK_FILE = ".lock"
VIEWS_FIGURE = "views.png"
CURVES_FIGURE = "training_curves.png"
# An evaluation's output_dir.
RESULTS_FILE = "results.json"
CONFUSION_FIGURE = "confusion_matrix.png"
EMBEDDING_FIGURE = "embedding.png"
CLASSIFIER_FILE = "classifier.keras"
STUDENT_FILE = "student.keras"


def model_file(model_dir: str | os.PathLike) -> storage.Location:
    """The whole model's file in `model_dir`: `MODEL_FILE`, or a legacy name if only that exists."""
    paths = [storage.join(model_dir, name) for name in (MODEL_FILE, *LEGACY_MODEL_FILES)]
    return next((path for path in paths if storage.exists(path)), paths[0])


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
    path = storage.location(path)
    if not storage.exists(path):
        raise UsageError(f"encoder path {path} does not exist; pass an export directory, a model_dir or a .keras file")
    if storage.exists(storage.join(path, "saved_model.pb")):
        return _from_export(path)
    keras_file = model_file(path) if storage.isdir(path) else path
    if not storage.basename(keras_file).endswith(".keras") or not storage.exists(keras_file):
        raise UsageError(
            f"{path} holds no encoder; pass an export directory (with saved_model.pb), a pretraining "
            f"model_dir (with {MODEL_FILE}) or a .keras file"
        )
    model = keras.saving.load_model(keras_file, safe_mode=True)  # Keras reads gs:// itself
    whole = model if isinstance(model, ContrastiveModel) else None
    encoder = model.encoder if whole else model
    return Pretrained(encoder, tuple(encoder.input_shape[1:]), encoder.name, {}, whole)


def _from_export(path: storage.Location) -> Pretrained:
    metadata_file = storage.join(path, METADATA_FILE)
    metadata = json.loads(storage.read_text(metadata_file)) if storage.exists(metadata_file) else {}
    if "image_shape" not in metadata:
        raise UsageError(f"{path} does not say what image size it takes: its {METADATA_FILE} is missing")
    shape = tuple(metadata["image_shape"])
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serve_float")
    inputs = keras.Input(shape)
    name = metadata.get("encoder", storage.basename(path))
    encoder = keras.Model(inputs, layer(inputs)["representation"], name=name)
    return Pretrained(encoder, shape, name, metadata)


logger = logging.getLogger(__name__)


class RunLock:
    """One run per model_dir: a lock file naming the process that trains into it.

    A second run on the same model_dir while that process lives is refused with one line
    naming it. A lock whose process is gone (on this machine: its pid has ended; on another:
    its heartbeat stopped `stale_after` seconds ago) is taken over, and the log says so.
    The holder rewrites the lock with the time, its heartbeat, every `stale_after / 4`
    seconds. Re-entrant within a process, so `pretrain` and the stages it calls can each
    hold it.

    Locally the lock is created exclusively: of two runs starting together, one wins. GCS
    through `tf.io.gfile` has no exclusive create, so there a run writes the lock and reads
    it back `settle` seconds later, and goes ahead only if it still names it: two runs
    started within that moment of each other may both go ahead.

    Example:
        >>> with RunLock("runs/simclr"):
        ...     train()
    """

    def __init__(self, model_dir: str | os.PathLike, stale_after: float = 600.0, settle: float = 0.5):
        self.path = storage.join(model_dir, LOCK_FILE)
        self.stale_after = stale_after
        self.settle = settle
        self._owned = False
        self._stop = threading.Event()
        self._heart: threading.Thread | None = None
        self._me: dict = {}

    def _holder(self) -> dict | None:
        try:
            return json.loads(storage.read_text(self.path))
        except (OSError, ValueError, tf.errors.OpError):
            return None

    def _alive(self, holder: dict) -> bool:
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder["pid"]), 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return self._age(holder) < self.stale_after

    def _create(self) -> bool:
        """Writes the lock naming this process unless there is one; whether it did."""
        if isinstance(self.path, str):  # no exclusive create: write, wait, read back
            if storage.exists(self.path):
                return False
            storage.write_text(self.path, json.dumps(self._me))
            time.sleep(self.settle)
            return self._holder() == self._me
        try:
            with open(self.path, "x") as file:  # exclusive: of two racing runs, one creates it
                json.dump(self._me, file)
            return True
        except FileExistsError:
            return False

    def __enter__(self) -> RunLock:
        storage.makedirs(storage.parent(self.path))
        self._me = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
        self._me["since"] = self._me["heartbeat"] = time.time()
        for _ in range(3):
            if self._create():
                break
            holder = self._holder() or {}
            if holder.get("pid") == self._me["pid"] and holder.get("host") == self._me["host"]:
                return self  # this process holds it already
            racing = not holder and self._age({}) < 5  # another run is writing it this moment
            if racing or (holder and self._alive(holder)):
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.get("since", 0)))
                raise UsageError(
                    f"{storage.parent(self.path)} is in use by process {holder.get('pid')} on {holder.get('host')} "
                    f"(since {since}: {holder.get('command', '?')}); wait for it to end, or use another model_dir"
                ) from None
            logger.warning(
                "taking over the lock on %s left by process %s on %s, which is no longer running",
                storage.parent(self.path), holder.get("pid", "?"), holder.get("host", "?"),
            )  # fmt: skip
            storage.remove(self.path)
        else:
            raise UsageError(f"could not take the lock {self.path}: other runs keep starting; start one at a time")
        self._owned = True
        self._stop.clear()
        self._heart = threading.Thread(target=self._heartbeat, daemon=True)
        self._heart.start()
        return self

    def _age(self, holder: dict) -> float:
        """Seconds since the lock's last heartbeat: the newer of its file's modification
        time and the time written in it (in-memory filesystems keep no times)."""
        try:
            modified = tf.io.gfile.stat(str(self.path)).mtime_nsec / 1e9
        except tf.errors.OpError:
            return float("inf")
        return time.time() - max(modified, holder.get("heartbeat", 0))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            try:
                storage.write_text(self.path, json.dumps({**self._me, "heartbeat": time.time()}))
            except (OSError, tf.errors.OpError) as error:  # a network blip: the next beat may pass
                logger.warning("could not refresh the lock %s (%s)", self.path, error)

    def __exit__(self, *exc_info) -> None:
        if self._owned:
            self._stop.set()
            self._heart.join()  # so that no heartbeat writes the lock again once it is gone
            storage.remove(self.path)
            self._owned = False
