"""The losses over two replicas equal the single-device loss over the global batch:
negatives and statistics are gathered from every replica."""

import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.losses import (
    barlow_twins_loss,
    mined_triplet_loss,
    mocov3_loss,
    multiview_nt_xent_loss,
    nnclr_loss,
    nt_xent_loss,
    supcon_loss,
    vicreg_loss,
)
from references import (
    numpy_barlow_twins,
    numpy_mocov3,
    numpy_nnclr,
    numpy_nt_xent,
    numpy_solo_supcon,
    numpy_supcontrast,
    numpy_vicreg,
    unit,
)


def _loss_and_gradient(strategy, loss_fn, z_a, z_b, weights):
    """`loss_fn` of a linear projection of fixed features, and its gradient, under `strategy`."""
    with strategy.scope():
        variable = tf.Variable(weights)
    batches = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((z_a, z_b)).batch(len(z_a)))

    @tf.function
    def step(batch):
        def replica_step(a, b):
            with tf.GradientTape() as tape:
                loss = loss_fn(a @ variable, b @ variable)
                # As in `distribute.minimize`: each replica's share, so that the summed gradient is the mean's.
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
    loss_fn = lambda a, b: nt_xent_loss(a, b, 0.5)
    single_loss, single_gradient = _loss_and_gradient(
        tf.distribute.OneDeviceStrategy("/cpu:0"), loss_fn, z_a, z_b, weights
    )
    mirrored_loss, mirrored_gradient = _loss_and_gradient(mirrored, loss_fn, z_a, z_b, weights)
    np.testing.assert_allclose(single_loss, numpy_nt_xent(z_a @ weights, z_b @ weights, 0.5), rtol=1e-5)
    np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-5)
    np.testing.assert_allclose(mirrored_gradient, single_gradient, rtol=1e-4, atol=1e-6)


def test_without_gathering_the_per_replica_loss_would_differ(mirrored):
    """Guards the gather: per-replica NT-Xent (2n-2 local negatives) is a different number."""
    rng = np.random.default_rng(2)
    z_a, z_b = rng.normal(size=(2, 8, 6)).astype(np.float32)
    local_only = np.mean([numpy_nt_xent(z_a[:4], z_b[:4], 0.5), numpy_nt_xent(z_a[4:], z_b[4:], 0.5)])
    mirrored_loss, _ = _loss_and_gradient(
        mirrored, lambda a, b: nt_xent_loss(a, b, 0.5), z_a, z_b, np.eye(6, dtype=np.float32)
    )
    np.testing.assert_allclose(mirrored_loss, numpy_nt_xent(z_a, z_b, 0.5), rtol=1e-5)
    assert abs(mirrored_loss - local_only) > 1e-2


def _under(strategy, loss_fn, *arrays):
    """The mean over replicas of `loss_fn` on each replica's slice of `arrays`."""
    dataset = tf.data.Dataset.from_tensor_slices(arrays).batch(len(arrays[0]))
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def run(batch):
        return strategy.reduce("MEAN", strategy.run(loss_fn, args=batch), None)

    return float(run(batch))


@pytest.mark.parametrize(
    "name, loss_fn",
    [
        ("supcon", lambda z, y: supcon_loss(z, y, 0.2)),
        ("supcon L_in", lambda z, y: supcon_loss(z, y, 0.2, form="in")),
        ("batch_hard", lambda z, y: mined_triplet_loss(z, y, 0.5, "batch_hard")),
        ("semi_hard", lambda z, y: mined_triplet_loss(z, y, 0.5, "semi_hard")),
        ("three views", lambda z, y: multiview_nt_xent_loss([z, 2.0 * z + 0.1, z * z], 0.5)),
    ],
)
def test_losses_over_two_replicas_equal_the_single_device_loss(mirrored, name, loss_fn):
    rng = np.random.default_rng(6)
    # Labels that split unevenly between the replicas' halves, so the anchors that count do too.
    z, labels = rng.normal(size=(12, 4)).astype(np.float32), np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5])
    single = _under(tf.distribute.OneDeviceStrategy("/cpu:0"), loss_fn, z, labels)
    np.testing.assert_allclose(_under(mirrored, loss_fn, z, labels), single, rtol=1e-5)


@pytest.mark.parametrize("form", ["out", "in"])
def test_supcon_over_two_replicas_matches_its_reference(mirrored, form):
    """L_out against SupContrast on the global batch (scaled by tau / 0.07); L_in against
    solo-learn's two processes, each with its half of the rows as anchors."""
    rng = np.random.default_rng(8)
    z, labels = rng.normal(size=(12, 4)).astype(np.float32), np.array([0, 1, 2, 0, 3, 3, 1, 2, 0, 4, 4, 1])
    if form == "out":
        loss_fn = lambda z, y: supcon_loss(z, y, 0.2, form="out", base_temperature=0.07)
        expected = numpy_supcontrast(unit(z)[:, None, :], labels, 0.2, 0.07)
    else:
        loss_fn = lambda z, y: supcon_loss(z, y, 0.2, form="in")
        expected = numpy_solo_supcon(z, labels, 0.2, world_size=2)
    np.testing.assert_allclose(_under(mirrored, loss_fn, z, labels), expected, rtol=1e-5)


# (loss, its NumPy transcription of the reference) for the losses that take statistics of,
# or candidates from, the whole batch of the two views' embeddings.
BATCH_LOSSES = {
    "barlow_twins": (lambda a, b: barlow_twins_loss(a, b, 5e-3), lambda a, b: numpy_barlow_twins(a, b, 5e-3)),
    "vicreg": (lambda a, b: vicreg_loss(a, b, 25.0, 25.0, 1.0), lambda a, b: numpy_vicreg(a, b, 25.0, 25.0, 1.0)),
    "nnclr": (lambda a, b: nnclr_loss(a, b, 0.2), lambda a, b: numpy_nnclr(a, b, 0.2)),
    "mocov3": (lambda a, b: mocov3_loss(a, b, 0.2), lambda a, b: numpy_mocov3(a, b, 0.2)),
}


@pytest.mark.parametrize("name", BATCH_LOSSES)
def test_over_two_replicas_the_statistics_are_the_global_batchs(mirrored, name):
    """The mean of the two replicas' losses is the reference's loss on the global batch,
    not the mean of its losses on each replica's half, and the gradient is the one-device
    gradient."""
    loss_fn, reference = BATCH_LOSSES[name]
    rng = np.random.default_rng(7)
    features = rng.normal(size=(2, 12, 6)).astype(np.float32)
    z_a, z_b = features[0], features[0] + 0.5 * features[1]
    weights = (np.eye(6) + 0.3 * rng.normal(size=(6, 6))).astype(np.float32)
    a, b = z_a @ weights, z_b @ weights
    mirrored_loss, mirrored_gradient = _loss_and_gradient(mirrored, loss_fn, z_a, z_b, weights)
    single_loss, single_gradient = _loss_and_gradient(
        tf.distribute.OneDeviceStrategy("/cpu:0"), loss_fn, z_a, z_b, weights
    )
    np.testing.assert_allclose(mirrored_loss, reference(a, b), rtol=1e-4)
    np.testing.assert_allclose(single_loss, reference(a, b), rtol=1e-4)
    np.testing.assert_allclose(mirrored_gradient, single_gradient, rtol=1e-3, atol=1e-5)
    per_half = np.mean([reference(a[:6], b[:6]), reference(a[6:], b[6:])])
    assert abs(mirrored_loss - per_half) > 1e-2 * abs(mirrored_loss)
