"""Checkpoints never hold the weights of a NaN loss, and a NaN run says so and stops."""

import hashlib

import keras
import numpy as np

from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.encoders import build_encoder
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.model import SimCLR
from contrastive_tf.pretraining import CheckpointUnlessNaN


def _model(temperature: float):
    encoder, head = build_encoder("small_cnn", (28, 28, 1), 0.25), ProjectionHead(2, 8)
    model = SimCLR(encoder, head, SimCLRAugment(seed=0), temperature=temperature)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    images = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    model = _model(temperature=0.5)
    first = CheckpointUnlessNaN(str(tmp_path), delete_checkpoint=False)
    model.fit(images, batch_size=8, epochs=1, callbacks=[first], verbose=0)
    weights = tmp_path / "latest.weights.h5"
    saved = _digest(weights)

    # Similarities divided by a denormal temperature overflow to inf: the loss is NaN.
    model = _model(temperature=1e-40)
    second = CheckpointUnlessNaN(str(tmp_path), delete_checkpoint=False)
    history = model.fit(images, batch_size=8, epochs=3, callbacks=[second], verbose=0)
    assert second.nan_epoch == 1  # resumed after epoch 0, failed in the next one
    assert len(history.history["loss"]) == 1  # it stopped instead of running the next epoch
    assert _digest(weights) == saved
