"""SupCon, multi-view NT-Xent, other similarities, InfoNCE, BYOL's and SimSiam's losses,
the margin contrastive loss and the triplet losses against independent NumPy references,
on one device (tests/distributed has them on two replicas)."""

import numpy as np
import pytest
import tensorflow as tf

from contrastive_tf.errors import UsageError
from contrastive_tf.losses import (
    info_nce_loss,
    margin_contrastive_loss,
    mined_triplet_loss,
    multiview_nt_xent_loss,
    negative_cosine_loss,
    normalized_regression_loss,
    nt_xent_loss,
    supcon_loss,
    triplet_loss,
)
from references import (
    numpy_nt_xent,
    numpy_similarity_nt_xent,
    numpy_solo_supcon,
    numpy_supcon,
    numpy_supcontrast,
    numpy_triplets,
    unit,
)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_matches_numpy(temperature):
    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(20, 8)).astype(np.float32), rng.integers(0, 4, 20)
    labels[-1] = 99  # an anchor without positives is left out of the mean
    np.testing.assert_allclose(
        float(supcon_loss(z, labels, temperature)), numpy_supcon(z, labels, temperature), rtol=1e-5
    )


def _views_and_labels(seed, n_views):
    """[10, n_views, 8] unit-norm views of 10 images in 4 classes, as SupContrast stacks them."""
    rng = np.random.default_rng(seed)
    return unit(rng.normal(size=(10, n_views, 8))).astype(np.float32), rng.integers(0, 4, 10)


@pytest.mark.parametrize("n_views, base_temperature", [(2, None), (3, 0.07)])
def test_supcon_out_matches_supcontrast(n_views, base_temperature):
    features, labels = _views_and_labels(3, n_views)
    z = np.concatenate([features[:, v] for v in range(n_views)])
    loss = supcon_loss(z, np.tile(labels, n_views), 0.1, form="out", base_temperature=base_temperature)
    # SupContrast always scales by tau / base_tau; base_tau = tau is no scaling.
    expected = numpy_supcontrast(features, labels, 0.1, base_temperature or 0.1)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize("n_views", [2, 3])
def test_supcon_in_matches_solo_learn(n_views):
    features, labels = _views_and_labels(4, n_views)
    z = np.concatenate([features[:, v] for v in range(n_views)])
    labels = np.tile(labels, n_views)
    expected = numpy_solo_supcon(z, labels, 0.2)
    np.testing.assert_allclose(float(supcon_loss(z, labels, 0.2, form="in")), expected, rtol=1e-5)


def test_supcon_in_leaves_out_anchors_without_positives():
    """With one positive per anchor L_in is L_out; the last row, alone in its class, is only
    a negative (solo-learn's loss would be inf)."""
    rng = np.random.default_rng(5)
    z, labels = rng.normal(size=(9, 8)).astype(np.float32), np.array([0, 0, 1, 1, 2, 2, 3, 3, 99])
    np.testing.assert_allclose(float(supcon_loss(z, labels, 0.2, form="in")), numpy_supcon(z, labels, 0.2), rtol=1e-5)


def test_supcon_rejects_an_unknown_form_and_a_base_temperature_not_above_zero():
    z, labels = np.ones((4, 2), np.float32), np.array([0, 0, 1, 1])
    with pytest.raises(UsageError, match="unknown SupCon form 'mean'"):
        supcon_loss(z, labels, form="mean")
    with pytest.raises(UsageError, match="base_temperature must be > 0"):
        supcon_loss(z, labels, base_temperature=0.0)


def test_multiview_nt_xent_is_supcon_over_images_and_nt_xent_for_two_views():
    rng = np.random.default_rng(1)
    views = list(rng.normal(size=(3, 6, 8)).astype(np.float32))
    expected = numpy_supcon(np.concatenate(views), np.tile(np.arange(6), 3), 0.5)
    np.testing.assert_allclose(float(multiview_nt_xent_loss(views, 0.5)), expected, rtol=1e-5)
    two = float(multiview_nt_xent_loss(views[:2], 0.5))
    np.testing.assert_allclose(two, numpy_nt_xent(views[0], views[1], 0.5), rtol=1e-5)
    with pytest.raises(UsageError, match="at least 2 views"):
        multiview_nt_xent_loss(views[:1])


@pytest.mark.parametrize("kind", ["dot", "neg_squared_euclidean"])
def test_nt_xent_with_other_similarities_matches_numpy(kind):
    rng = np.random.default_rng(2)
    z_a, z_b = 0.5 * rng.normal(size=(2, 5, 4)).astype(np.float32)
    expected = numpy_similarity_nt_xent(z_a, z_b, 0.5, kind)
    np.testing.assert_allclose(float(nt_xent_loss(z_a, z_b, 0.5, kind=kind)), expected, rtol=1e-5)
    with pytest.raises(UsageError, match="unknown similarity"):
        nt_xent_loss(z_a, z_b, 0.5, kind="manhattan")


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(3)
    query, positive, negatives = rng.normal(size=(5, 8)), rng.normal(size=(5, 8)), rng.normal(size=(30, 8))
    q, p, k = unit(query), unit(positive), unit(negatives)
    expected = np.mean(
        [
            -np.log(np.exp(q[i] @ p[i] / 0.07) / (np.exp(q[i] @ p[i] / 0.07) + np.exp(k @ q[i] / 0.07).sum()))
            for i in range(5)
        ]
    )
    loss = info_nce_loss(query.astype(np.float32), positive.astype(np.float32), negatives.astype(np.float32))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_byol_and_simsiam_regression_losses_match_numpy():
    rng = np.random.default_rng(7)
    p, z = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    # BYOL: the squared distance of the unit vectors; SimSiam: minus their cosine.
    byol = np.mean(np.sum((unit(p) - unit(z)) ** 2, axis=1))
    simsiam = -np.mean([q @ y / np.linalg.norm(q) / np.linalg.norm(y) for q, y in zip(p, z)])
    assert float(normalized_regression_loss(p, z)) == pytest.approx(byol, rel=1e-5)
    assert float(negative_cosine_loss(p, z)) == pytest.approx(simsiam, rel=1e-5)
    assert float(negative_cosine_loss(p, 3 * p)) == pytest.approx(-1.0, abs=1e-6)


def test_margin_contrastive_loss_matches_numpy_without_a_half():
    x1, x2 = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), np.array([[3.0, 4.0], [0.3, 0.4], [1.0, 1.0]])
    similar = np.array([1, 0, 0])
    # d = 5, 0.5, 0: similar 5^2 = 25; dissimilar (1 - 0.5)^2 = 0.25 and (1 - 0)^2 = 1.
    loss = margin_contrastive_loss(x1.astype(np.float32), x2.astype(np.float32), similar, margin=1.0)
    np.testing.assert_allclose(float(loss), (25 + 0.25 + 1) / 3, rtol=1e-6)
    with tf.GradientTape() as tape:
        same = tf.Variable(np.ones((2, 3), np.float32))
        value = margin_contrastive_loss(same, same, np.zeros(2))
    assert np.all(np.isfinite(tape.gradient(value, same).numpy()))


def test_triplet_loss_matches_numpy():
    rng = np.random.default_rng(4)
    a, p, n = rng.normal(size=(3, 10, 4)).astype(np.float32)
    expected = np.mean(np.maximum(0, ((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + 1.0))
    np.testing.assert_allclose(float(triplet_loss(a, p, n, margin=1.0)), expected, rtol=1e-5)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard"])
def test_mined_triplet_loss_matches_numpy(mining):
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=(16, 3)).astype(np.float32), rng.integers(0, 3, 16)
    expected = numpy_triplets(x, labels, 0.5, mining)
    np.testing.assert_allclose(float(mined_triplet_loss(x, labels, 0.5, mining)), expected, rtol=1e-4)
