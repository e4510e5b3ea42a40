"""Barlow Twins', VICReg's and NNCLR's losses and NNCLR's nearest neighbours against NumPy
transcriptions of the reference code, on one device (tests/distributed has them on two
replicas)."""

import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.losses import barlow_twins_loss, nnclr_loss, vicreg_loss
from contrastive_tf.methods.queue import KeyQueue
from references import numpy_barlow_twins, numpy_nearest_neighbours, numpy_nnclr, numpy_vicreg


def _views(seed, n=12, d=6):
    """Two correlated views whose dimensions have different scales and offsets, some with
    a standard deviation below 1 (so that VICReg's hinge is active) and some above."""
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.3, 2.0, d)
    z_a = rng.normal(size=(n, d)) * scale + rng.normal(size=d)
    z_b = z_a + 0.5 * rng.normal(size=(n, d)) * scale
    return z_a.astype(np.float32), z_b.astype(np.float32)


@pytest.mark.parametrize("redundancy_weight", [5e-3, 0.5])
def test_barlow_twins_loss_matches_the_reference(redundancy_weight):
    z_a, z_b = _views(0)
    expected = numpy_barlow_twins(z_a, z_b, redundancy_weight)
    np.testing.assert_allclose(float(barlow_twins_loss(z_a, z_b, redundancy_weight)), expected, rtol=1e-5)


def test_barlow_twins_loss_vanishes_when_the_cross_correlation_is_the_identity():
    """Identical views whose dimensions are uncorrelated: C = I, up to the epsilon of the
    normalisation. Repeating a dimension costs lambda for each of its two off-diagonal 1s."""
    rng = np.random.default_rng(1)
    centred = rng.normal(size=(32, 4))
    centred -= centred.mean(axis=0)
    z = np.linalg.qr(centred)[0].astype(np.float32)  # orthogonal columns, each with mean 0
    assert float(barlow_twins_loss(z, z, 5e-3)) == pytest.approx(0.0, abs=1e-3)
    repeated = np.concatenate([z, z[:, :1]], axis=1)
    assert float(barlow_twins_loss(repeated, repeated, 0.1)) == pytest.approx(2 * 0.1, abs=1e-3)


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
def test_vicreg_loss_matches_the_reference(weights):
    z_a, z_b = _views(2)
    np.testing.assert_allclose(float(vicreg_loss(z_a, z_b, *weights)), numpy_vicreg(z_a, z_b, *weights), rtol=1e-5)


def test_vicreg_charges_a_collapsed_batch_the_whole_variance_hinge():
    """Every image mapped to the same embedding: no invariance or covariance cost, and a
    variance cost of mu (1 - sqrt(1e-4)) per view, averaged over the two."""
    z = np.tile(np.arange(5, dtype=np.float32), (8, 1))
    assert float(vicreg_loss(z, z, 25.0, 25.0, 1.0)) == pytest.approx(25.0 * (1 - 0.01), rel=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 0.2])
def test_nnclr_loss_matches_the_reference(temperature):
    neighbours, predictions = _views(3)
    expected = numpy_nnclr(neighbours, predictions, temperature)
    np.testing.assert_allclose(float(nnclr_loss(neighbours, predictions, temperature)), expected, rtol=1e-5)


def test_the_support_set_returns_each_projections_most_similar_row():
    rng = np.random.default_rng(4)
    queue = KeyQueue(size=50)
    queue.build((None, 8))
    queue.enqueue(tf.constant(rng.normal(size=(50, 8)), tf.float32))
    z = rng.normal(size=(10, 8)).astype(np.float32)
    expected = numpy_nearest_neighbours(z, np.asarray(queue.negatives()))
    np.testing.assert_allclose(queue.nearest(z), expected, atol=1e-6)


@pytest.mark.parametrize(
    "loss_fn", [barlow_twins_loss, vicreg_loss, nnclr_loss], ids=["barlow_twins", "vicreg", "nnclr"]
)
def test_the_losses_compute_in_float32_from_bfloat16_embeddings(loss_fn):
    z_a, z_b = _views(5)
    low = loss_fn(tf.cast(z_a, tf.bfloat16), tf.cast(z_b, tf.bfloat16))
    rounded = [np.asarray(tf.cast(tf.cast(z, tf.bfloat16), tf.float32)) for z in (z_a, z_b)]
    assert low.dtype == tf.float32
    np.testing.assert_allclose(float(low), float(loss_fn(*rounded)), rtol=1e-5)
