"""The SimCLR keras.Model: fit, metrics, .keras files, and training under MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.encoders import build_encoder
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.model import SimCLR


def _images(count=32, size=28, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, size, size, channels), dtype=np.uint8)


def _model(augmenter=None, num_classes=None, projection_layers=2):
    return SimCLR(
        encoder=build_encoder("small_cnn", (28, 28, 1), width=0.25),
        projection_head=ProjectionHead(projection_layers, 16),
        augmenter=augmenter or SimCLRAugment(seed=0),
        temperature=0.5,
        num_classes=num_classes,
    )


def test_fit_logs_loss_contrastive_and_probe_accuracy():
    model = _model(num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    labels = np.arange(32) % 10
    history = model.fit(_images(), labels, batch_size=8, epochs=2, verbose=0).history
    assert set(history) == {"loss", "contrastive_accuracy", "probe_loss", "probe_accuracy"}
    assert all(np.isfinite(history["loss"]))
    # With 8 images (16 views) a chance-level loss is about log(15).
    assert 1.0 < history["loss"][0] < 2 * np.log(15)


def test_fit_without_labels_trains_without_the_probe():
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(_images(), batch_size=8, epochs=1, verbose=0).history
    assert set(history) == {"loss", "contrastive_accuracy"}


def test_call_returns_the_representation():
    model = _model()
    h = model(_images(4))
    assert h.shape == (4, 64)  # small_cnn width 0.25: 256 * 0.25 units


def test_model_round_trips_through_a_keras_file(tmp_path):
    model = _model(num_classes=10, projection_layers=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(_images(), np.arange(32) % 10, batch_size=8, epochs=1, verbose=0)
    path = tmp_path / "simclr.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, SimCLR) and restored.temperature == 0.5 and restored.num_classes == 10
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations) == 4  # optimizer state came too
    images = _images(4, seed=1)
    np.testing.assert_allclose(restored(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-6)
    # It keeps training from where it was.
    restored.fit(_images(), np.arange(32) % 10, batch_size=8, epochs=1, verbose=0)


def _one_step_weights(strategy, initial_weights, images):
    with strategy.scope():
        model = _model(augmenter=keras.layers.Identity())
        model.build((None, 28, 28, 1))
        model.set_weights(initial_weights)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(len(images)), epochs=1, verbose=0)
    return history.history["loss"][0], model.get_weights()


def test_mirrored_training_step_matches_single_device(mirrored):
    """Gathered negatives, synchronised batch norm and the gradient scaling together make
    one step on 2 replicas equal one step on one device with the same global batch."""
    images = _images(16, seed=3)
    reference = _model(augmenter=keras.layers.Identity())
    reference.build((None, 28, 28, 1))
    initial = reference.get_weights()
    single_loss, single_weights = _one_step_weights(tf.distribute.OneDeviceStrategy("/cpu:0"), initial, images)
    mirrored_loss, mirrored_weights = _one_step_weights(mirrored, initial, images)
    assert mirrored_loss == pytest.approx(single_loss, rel=1e-4)
    for before, single, distributed in zip(initial, single_weights, mirrored_weights):
        single_update, distributed_update = single - before, distributed - before
        if np.linalg.norm(single_update) == 0:  # e.g. BN moving variance of a constant channel
            continue
        # Summation order differs across replicas, so compare updates, not bits. A missing
        # gather, unsynchronised BN or a doubled gradient would be off by tens of percent.
        relative = np.linalg.norm(distributed_update - single_update) / np.linalg.norm(single_update)
        assert relative < 1e-2


def test_non_positive_temperature_is_rejected():
    with pytest.raises(ValueError, match="temperature"):
        SimCLR(build_encoder("small_cnn", (28, 28, 1)), ProjectionHead(), SimCLRAugment(), temperature=0.0)
