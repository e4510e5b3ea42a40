"""NT-Xent against an independent NumPy implementation, on one device and on two."""

import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.errors import UsageError
from contrastive_tf.losses import nt_xent_loss


def numpy_nt_xent(z_a: np.ndarray, z_b: np.ndarray, temperature: float) -> float:
    """The paper's definition, written out: 2N anchors, each with 1 positive and 2N-2 negatives."""
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z_a)
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        similarities = np.array([z[i] @ z[k] / temperature for k in range(2 * n)])
        others = [k for k in range(2 * n) if k != i]
        total += -(similarities[positive] - np.log(np.sum(np.exp(similarities[others]))))
    return total / (2 * n)


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


def _loss_and_gradient(strategy, z_a, z_b, weights, temperature):
    """Loss of a linear projection of fixed features, and its gradient, under `strategy`."""
    with strategy.scope():
        variable = tf.Variable(weights)
    batches = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((z_a, z_b)).batch(len(z_a)))

    @tf.function
    def step(batch):
        def replica_step(a, b):
            with tf.GradientTape() as tape:
                loss = nt_xent_loss(a @ variable, b @ variable, temperature)
                # As in SimCLR.train_step: each replica's share, so that the summed gradient is the mean's.
                share = loss / strategy.num_replicas_in_sync
            return loss, tape.gradient(share, variable)

        losses, gradients = strategy.run(replica_step, args=batch)
        return strategy.reduce("MEAN", losses, None), strategy.reduce("SUM", gradients, None)

    loss, gradient = step(next(iter(batches)))
    return float(loss), gradient.numpy()


def test_mirrored_loss_and_gradients_equal_single_device(mirrored):
    rng = np.random.default_rng(1)
    z_a, z_b = rng.normal(size=(2, 12, 6)).astype(np.float32)
    weights = rng.normal(size=(6, 4)).astype(np.float32)
    assert mirrored.num_replicas_in_sync == 2
    single_loss, single_gradient = _loss_and_gradient(tf.distribute.OneDeviceStrategy("/cpu:0"), z_a, z_b, weights, 0.5)
    mirrored_loss, mirrored_gradient = _loss_and_gradient(mirrored, z_a, z_b, weights, 0.5)
    np.testing.assert_allclose(single_loss, numpy_nt_xent(z_a @ weights, z_b @ weights, 0.5), rtol=1e-5)
    np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-5)
    np.testing.assert_allclose(mirrored_gradient, single_gradient, rtol=1e-4, atol=1e-6)


def test_without_gathering_the_per_replica_loss_would_differ(mirrored):
    """Guards the gather: per-replica NT-Xent (2n-2 local negatives) is a different number."""
    rng = np.random.default_rng(2)
    z_a, z_b = rng.normal(size=(2, 8, 6)).astype(np.float32)
    local_only = np.mean([numpy_nt_xent(z_a[:4], z_b[:4], 0.5), numpy_nt_xent(z_a[4:], z_b[4:], 0.5)])
    mirrored_loss, _ = _loss_and_gradient(mirrored, z_a, z_b, np.eye(6, dtype=np.float32), 0.5)
    np.testing.assert_allclose(mirrored_loss, numpy_nt_xent(z_a, z_b, 0.5), rtol=1e-5)
    assert abs(mirrored_loss - local_only) > 1e-2
