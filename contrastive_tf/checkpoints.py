"""Checkpoints that let a killed run continue exactly where it was.

A checkpoint is the model's weights with the optimizer state (its step counter drives the
learning-rate schedule) and the augmentation's seed counters, in `step-N.weights.h5`,
and `checkpoint.json` naming the newest one, in any folder `storage` reaches (gs:// too).
Both are written whole to a local file and moved into place (see `storage.write_atomically`),
and `checkpoint.json` moves only after its weights are complete, so a kill at any moment
leaves the previous checkpoint readable. A file damaged afterwards (a
truncated copy, a failing disk) is detected on resume, which falls back to the previous
complete checkpoint and says so. On resume, `pretrain` skips the batches already trained
on, so the data order is the one an uninterrupted run sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import pathlib
from collections.abc import Iterator

import h5py
import keras

from contrastive_tf import storage
from contrastive_tf.errors import UsageError

logger = logging.getLogger(__name__)

INDEX = "checkpoint.json"
_SUFFIX = ".weights.h5"


def _step_of(path: storage.Location) -> int:
    return int(storage.basename(path)[len("step-") : -len(_SUFFIX)])


def _readable(local: pathlib.Path) -> str | None:
    """None if the local file `local` is a complete weights file, else why not (a truncated
    or damaged file fails to open as HDF5)."""
    try:
        with h5py.File(local, "r") as file:
            file.visit(lambda name: None)
        return None
    except (OSError, RuntimeError, KeyError) as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: its step, where it is, and a local file holding it (itself,
    or a copy of a remote one, made once)."""

    step: int
    path: storage.Location
    local: pathlib.Path


def _candidates(directory: storage.Location) -> list[dict]:
    """The checkpoints in `directory`, newest first: the one the index names, then every
    other weights file by step. A damaged index is said and passed over."""
    entries = []
    index = storage.join(directory, INDEX)
    if storage.exists(index):
        try:
            entry = json.loads(storage.read_text(index))
            entries.append({"step": int(entry["step"]), "weights": str(entry["weights"])})
        except (ValueError, KeyError, TypeError) as error:
            logger.warning("%s is unreadable (%s); looking for the checkpoints beside it", index, error)
    files = sorted(_weights_files(directory), key=_step_of, reverse=True)
    named = {entry["weights"] for entry in entries}
    names = [storage.basename(path) for path in files]
    return entries + [{"step": _step_of(name), "weights": name} for name in names if name not in named]


def _weights_files(directory: storage.Location) -> list[storage.Location]:
    return storage.glob(storage.join(directory, f"step-*{_SUFFIX}")) if storage.isdir(directory) else []


@contextlib.contextmanager
def newest_checkpoint(directory: str | os.PathLike) -> Iterator[Checkpoint | None]:
    """The newest complete checkpoint in `directory` (None when there is none), falling back
    past damaged ones and saying so; UsageError naming the files when there are checkpoints
    and none is usable. A remote one is copied once, for checking and loading, and the copy
    removed on leaving."""
    directory = storage.location(directory)
    damaged = []
    for entry in _candidates(directory):
        path = storage.join(directory, entry["weights"])
        if not storage.exists(path):
            damaged.append((path, "missing"))
            continue
        with contextlib.ExitStack() as copy:
            try:
                local = copy.enter_context(storage.local_copy(path))
                reason = _readable(local)
            except OSError as error:
                reason = str(error)
            if reason is None:
                if damaged:
                    logger.warning(
                        "checkpoint %s is damaged (%s); resuming from the previous one, %s (step %d)",
                        damaged[0][0], damaged[0][1], entry["weights"], entry["step"],
                    )  # fmt: skip
                yield Checkpoint(entry["step"], path, local)
                return
        damaged.append((path, reason))
    if damaged:
        files = ", ".join(f"{storage.basename(path)} ({reason})" for path, reason in damaged)
        raise UsageError(
            f"no usable checkpoint in {directory}: {files}; restore the folder from a backup, or move it "
            "away to start over"
        )
    yield None


def latest_step(directory: str | os.PathLike) -> int:
    """The training step of the newest complete checkpoint in `directory`, 0 when there is none."""
    with newest_checkpoint(directory) as newest:
        return newest.step if newest else 0


def restore(model: keras.Model, directory: str | os.PathLike) -> int:
    """Loads the newest complete checkpoint into `model` (built and compiled) and returns
    its step, 0 when there is none (see `load`)."""
    with newest_checkpoint(directory) as newest:
        return load(model, newest) if newest else 0


def load(model: keras.Model, checkpoint: Checkpoint) -> int:
    """Loads `checkpoint` into `model` (built and compiled) and returns its step. UsageError
    when the checkpoint holds another model's weights or cannot be read."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(checkpoint.local)
    except OSError as error:
        raise UsageError(
            f"checkpoint {checkpoint.path} cannot be read ({str(error).splitlines()[0]}); restore it from a "
            "backup, or delete it to resume from the one before"
        ) from error
    except ValueError as error:
        raise UsageError(
            f"the checkpoint in {storage.parent(checkpoint.path)} was made by another model "
            f"({str(error).splitlines()[0]}); use a new model_dir, or the method, encoder and width that made it"
        ) from error
    return checkpoint.step


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves the training state every `every_steps` steps, or at each epoch's end.

    It stops training at the first non-finite loss and never saves the weights that
    produced it, so the newest checkpoint is always a good one (`nan_epoch` says where).
    The step saved is the optimizer's own counter, which a restore brings back too.
    With `directory=None` it only watches the loss: the non-chief workers of a cluster
    stop with the chief but write nothing.
    """

    def __init__(self, directory: str | os.PathLike | None, every_steps: int | None = None, keep: int = 2):
        super().__init__()
        self.directory = storage.location(directory) if directory is not None else None
        self.every_steps = every_steps
        self.keep = keep
        self.nan_epoch: int | None = None
        self._epoch = 0
        self._saved_step: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_epoch = self._epoch
            self.model.stop_training = True
            return
        if self.every_steps and self._step() % self.every_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_epoch is None and not self.every_steps:
            self.save()

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def save(self) -> None:
        if self.directory is None:
            return
        step = self._step()
        if step == self._saved_step:  # e.g. a stop mid-epoch, saved already at the epoch's end
            return
        storage.makedirs(self.directory)
        entry = {"step": step, "weights": f"step-{step}{_SUFFIX}"}
        storage.write_atomically(storage.join(self.directory, entry["weights"]), self.model.save_weights)
        storage.write_text(storage.join(self.directory, INDEX), json.dumps(entry))
        self._saved_step = step
        # Older checkpoints go only after the index names the new one.
        saved = sorted(_weights_files(self.directory), key=_step_of)
        for old in saved[: -self.keep]:
            storage.remove(old)
