"""What a run folder holds, each artefact named once, and the encoder read back from it.

A pretraining run leaves the encoder in two forms: the SavedModel export (any TensorFlow
app can load it; its batch norm is frozen in inference mode) and `model.keras` in its
model_dir (the whole Keras model of its method: encoder, heads and augmentation, all
trainable). Evaluations write their results and figures into their own output folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import socket
import sys
import threading
import time

import keras

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


def model_file(model_dir: str | os.PathLike) -> pathlib.Path:
    """The whole model's file in `model_dir`: `MODEL_FILE`, or a legacy name if only that exists."""
    model_dir = pathlib.Path(model_dir)
    found = [model_dir / name for name in (MODEL_FILE, *LEGACY_MODEL_FILES) if (model_dir / name).exists()]
    return found[0] if found else model_dir / MODEL_FILE


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
        raise UsageError(f"encoder path {path} does not exist; pass an export directory, a model_dir or a .keras file")
    if (path / "saved_model.pb").exists():
        return _from_export(path)
    keras_file = model_file(path) if path.is_dir() else path
    if keras_file.suffix != ".keras" or not keras_file.exists():
        raise UsageError(
            f"{path} holds no encoder; pass an export directory (with saved_model.pb), a pretraining "
            f"model_dir (with {MODEL_FILE}) or a .keras file"
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


logger = logging.getLogger(__name__)


class RunLock:
    """One run per model_dir: a lock file naming the process that trains into it.

    A second run on the same model_dir while that process lives is refused with one line
    naming it. A lock whose process is gone (on this machine: its pid has ended; on another:
    its heartbeat stopped `stale_after` seconds ago) is taken over, and the log says so.
    The holder refreshes the heartbeat every `stale_after / 4` seconds. Re-entrant within
    a process, so `pretrain` and the stages it calls can each hold it.

    Example:
        >>> with RunLock("runs/simclr"):
        ...     train()
    """

    def __init__(self, model_dir: str | os.PathLike, stale_after: float = 600.0):
        self.path = pathlib.Path(model_dir) / LOCK_FILE
        self.stale_after = stale_after
        self._owned = False
        self._stop = threading.Event()

    def _me(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv), "since": time.time()}

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
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
        return self._age() < self.stale_after

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = self._me()
        for _ in range(3):
            try:
                with open(self.path, "x") as file:  # exclusive: of two racing runs, one creates it
                    json.dump(me, file)
                break
            except FileExistsError:
                holder = self._holder() or {}
                if holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
                    return self  # this process holds it already
                racing = not holder and self._age() < 5  # another run is writing it this moment
                if racing or (holder and self._alive(holder)):
                    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.get("since", 0)))
                    raise UsageError(
                        f"{self.path.parent} is in use by process {holder.get('pid')} on {holder.get('host')} "
                        f"(since {since}: {holder.get('command', '?')}); wait for it to end, or use another model_dir"
                    ) from None
                logger.warning(
                    "taking over the lock on %s left by process %s on %s, which is no longer running",
                    self.path.parent, holder.get("pid", "?"), holder.get("host", "?"),
                )  # fmt: skip
                self.path.unlink(missing_ok=True)
        else:
            raise UsageError(f"could not take the lock {self.path}: other runs keep starting; start one at a time")
        self._owned = True
        threading.Thread(target=self._heartbeat, daemon=True).start()
        return self

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return float("inf")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            self.path.touch(exist_ok=True)

    def __exit__(self, *exc_info) -> None:
        if self._owned:
            self._stop.set()
            self.path.unlink(missing_ok=True)
            self._owned = False
