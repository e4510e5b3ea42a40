"""Checkpoints: atomic, never holding the weights of a NaN loss, and restoring everything."""

import hashlib
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf import storage
from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.checkpoints import INDEX, TrainingCheckpoint, latest_step, load, newest_checkpoint, restore
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.methods import SimCLR, contrastive_model

IMAGES = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)


def _model(temperature: float = 0.5):
    encoder, head = build_encoder("small_cnn", (28, 28, 1), 0.25), ProjectionHead(2, 8)
    model = SimCLR(encoder, head, SimCLRAugment(seed=0), temperature=temperature)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_restore_brings_back_weights_optimizer_state_and_seed_counters(tmp_path):
    model = _model()
    at_step_3 = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: (
            int(model.optimizer.iterations) == 3
            and at_step_3.extend(model.get_weights() + [v.numpy() for v in model.optimizer.variables])
        )
    )
    checkpoint = TrainingCheckpoint(tmp_path, every_steps=3)
    model.fit(IMAGES, batch_size=8, epochs=2, callbacks=[checkpoint, record], verbose=0)  # 4 steps
    assert latest_step(tmp_path) == 3
    restored = _model()
    assert restore(restored, tmp_path) == 3
    state = restored.get_weights() + [v.numpy() for v in restored.optimizer.variables]
    assert len(state) == len(at_step_3)
    for expected, actual in zip(at_step_3, state):  # includes Adam's moments and the seed counters
        np.testing.assert_array_equal(actual, expected)
    counters = [w for w in restored.weights if "rng_state" in w.path]
    assert any(int(w.numpy()[0]) > 0 for w in counters)  # the augmentation's stream moved on
    # Keeps the newest two checkpoints, and the index names the newest.
    model.fit(IMAGES, batch_size=8, epochs=4, callbacks=[TrainingCheckpoint(tmp_path, every_steps=3)], verbose=0)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-12.weights.h5", "step-9.weights.h5"]
    assert json.loads((tmp_path / INDEX).read_text()) == {"step": 12, "weights": "step-12.weights.h5"}


def test_a_save_that_dies_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _model()
    checkpoint = TrainingCheckpoint(tmp_path)
    model.fit(IMAGES, batch_size=8, epochs=1, callbacks=[checkpoint], verbose=0)
    index = (tmp_path / INDEX).read_text()

    def die_while_writing(self, filepath, **kwargs):
        open(filepath, "wb").write(b"half a file")
        raise KeyboardInterrupt  # as a kill would, mid-write

    monkeypatch.setattr(SimCLR, "save_weights", die_while_writing)
    with pytest.raises(KeyboardInterrupt):
        model.fit(IMAGES, batch_size=8, epochs=1, callbacks=[checkpoint], verbose=0)
    assert (tmp_path / INDEX).read_text() == index
    assert sorted(p.name for p in tmp_path.iterdir()) == [INDEX, "step-2.weights.h5"]
    monkeypatch.undo()
    assert restore(_model(), tmp_path) == 2


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    model = _model()
    model.fit(IMAGES, batch_size=8, epochs=1, callbacks=[TrainingCheckpoint(tmp_path)], verbose=0)
    saved = _digest(tmp_path / "step-2.weights.h5")

    # Similarities divided by a denormal temperature overflow to inf: the loss is NaN.
    model = _model(temperature=1e-40)
    restore(model, tmp_path)
    checkpoint = TrainingCheckpoint(tmp_path)
    history = model.fit(IMAGES, batch_size=8, initial_epoch=1, epochs=3, callbacks=[checkpoint], verbose=0)
    assert checkpoint.nan_epoch == 1
    assert len(history.history["loss"]) == 1  # it stopped instead of running the next epoch
    assert latest_step(tmp_path) == 2 and _digest(tmp_path / "step-2.weights.h5") == saved


def test_a_checkpoint_of_another_model_is_refused_with_one_line(tmp_path):
    model = _model()
    model.fit(IMAGES, batch_size=8, epochs=1, callbacks=[TrainingCheckpoint(tmp_path)], verbose=0)
    other = contrastive_model("byol", build_encoder("small_cnn", (28, 28, 1), 0.25), SimCLRAugment(seed=0))
    other.compile(optimizer=keras.optimizers.Adam(0.01))
    with pytest.raises(UsageError, match=f"the checkpoint in {tmp_path} was made by another model"):
        restore(other, tmp_path)


def _two_checkpoints(tmp_path):
    """A model trained 4 steps with a checkpoint every 2: step-2 and step-4 on disk."""
    model = _model()
    model.fit(tf.data.Dataset.from_tensors(np.zeros((8, 28, 28, 1), np.uint8)).repeat(4), epochs=1, verbose=0,
              callbacks=[TrainingCheckpoint(tmp_path, every_steps=2)])  # fmt: skip
    return model


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one_and_says_so(tmp_path, caplog):
    _two_checkpoints(tmp_path)
    newest = tmp_path / "step-4.weights.h5"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    assert latest_step(tmp_path) == 2
    assert "step-4.weights.h5 is damaged" in caplog.text and "step-2.weights.h5 (step 2)" in caplog.text
    assert restore(_model(), tmp_path) == 2


def test_an_unreadable_index_is_passed_over_for_the_weights_beside_it(tmp_path, caplog):
    _two_checkpoints(tmp_path)
    (tmp_path / "checkpoint.json").write_text('{"step": 4, "weig')
    assert latest_step(tmp_path) == 4
    assert "checkpoint.json is unreadable" in caplog.text


def test_no_usable_checkpoint_is_one_line_naming_the_files(tmp_path):
    _two_checkpoints(tmp_path)
    for path in tmp_path.glob("step-*.weights.h5"):
        path.write_bytes(b"not hdf5")
    with pytest.raises(UsageError, match=r"no usable checkpoint in .*step-4.weights.h5 \(.*step-2.weights.h5"):
        latest_step(tmp_path)


def test_a_checkpoint_on_another_filesystem_is_copied_once_to_check_and_load(monkeypatch):
    model = _model()
    model.fit(IMAGES, batch_size=8, epochs=1, callbacks=[TrainingCheckpoint("ram://run/checkpoints", 2)], verbose=0)
    copies = []
    local_copy = storage.local_copy

    def counted(path):
        copies.append(str(path))
        return local_copy(path)

    monkeypatch.setattr(storage, "local_copy", counted)
    restored = _model()
    with newest_checkpoint("ram://run/checkpoints") as newest:
        assert newest.step == 2 and load(restored, newest) == 2
    assert copies == ["ram://run/checkpoints/step-2.weights.h5"] and not newest.local.exists()
    for expected, actual in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(actual, expected)
