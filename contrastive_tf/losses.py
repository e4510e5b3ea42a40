"""Contrastive objectives: NT-Xent (SimCLR, also over more than two views), SupCon,
InfoNCE (MoCo), NNCLR's loss, BYOL's and SimSiam's regression of one view's projection
onto the other's, Barlow Twins' and VICReg's statistics of the batch's embeddings, the
margin contrastive loss and the triplet loss with batch mining.

Under a `tf.distribute` strategy the losses that compare an anchor with the rest of the
batch, or take statistics of the batch, gather every replica's embeddings, so each anchor
meets the whole global batch (2N - 2 negatives for a global batch of N images, 2N views,
in NT-Xent) and each statistic is the global batch's. Each replica returns its share, so
that the mean of the replicas' losses is the single-device loss on the global batch.
"""

from __future__ import annotations

import tensorflow as tf

from contrastive_tf.errors import UsageError

# Added to a view's similarity with itself so that it is never a candidate.
_SELF_MASK = 1e9


def gather_replicas(z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """All replicas' z stacked on axis 0, and where this replica's rows start."""
    replica = tf.distribute.get_replica_context()
    if replica is None or replica.num_replicas_in_sync == 1:
        return z, tf.constant(0)
    offset = tf.cast(replica.replica_id_in_sync_group, tf.int32) * tf.shape(z)[0]
    # all_gather's gradient sums the upstream gradients of every replica.
    return replica.all_gather(z, axis=0), offset


SIMILARITIES = ("cosine", "dot", "neg_squared_euclidean")


def check_temperature(temperature: float | tf.Tensor) -> None:
    """UsageError (a ValueError) unless a softmax temperature is > 0; tensors pass."""
    if not isinstance(temperature, tf.Tensor) and temperature <= 0:
        raise UsageError(f"temperature must be > 0, got {temperature}")


def similarity(a: tf.Tensor, b: tf.Tensor, kind: str = "cosine") -> tf.Tensor:
    """[n, m] similarities of the rows of `a` [n, d] and `b` [m, d], in float32: cosine,
    dot product, or negative squared Euclidean distance."""
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    if kind == "cosine":
        return tf.matmul(tf.math.l2_normalize(a, axis=1), tf.math.l2_normalize(b, axis=1), transpose_b=True)
    if kind == "dot":
        return tf.matmul(a, b, transpose_b=True)
    if kind == "neg_squared_euclidean":
        return -tf.maximum(_squared_distances(a, b), 0.0)
    raise UsageError(f"unknown similarity {kind!r}; choose one of {', '.join(SIMILARITIES)}")


def _squared_distances(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    squared_a = tf.reduce_sum(tf.square(a), axis=1, keepdims=True)
    squared_b = tf.reduce_sum(tf.square(b), axis=1)
    return squared_a - 2.0 * tf.matmul(a, b, transpose_b=True) + squared_b


def _replica_share(local_sum: tf.Tensor, local_count: tf.Tensor) -> tf.Tensor:
    """This replica's part of (sum over the global batch) / (global count), scaled so that
    the mean over replicas is that global mean however the counts split."""
    replica = tf.distribute.get_replica_context()
    replicas = 1 if replica is None else replica.num_replicas_in_sync
    count = local_count if replicas == 1 else replica.all_reduce(tf.distribute.ReduceOp.SUM, local_count)
    return tf.math.divide_no_nan(local_sum * float(replicas), count)


def nt_xent_logits(
    z_a: tf.Tensor, z_b: tf.Tensor, temperature: float = 0.5, kind: str = "cosine"
) -> tuple[tf.Tensor, tf.Tensor]:
    """Logits and targets of NT-Xent, one row per local anchor.

    Args:
        z_a, z_b: [n, d] projections of the two views of this replica's n images.
        temperature: tau > 0; similarities are divided by it.
        kind: the similarity, one of `SIMILARITIES`.

    Returns:
        logits [2n, 2N]: row i holds anchor i's similarity to every view of the
            global batch (the other view of each image first, then the same view;
            an anchor's similarity to itself is masked out).
        targets [2n]: the column of each anchor's positive.
    """
    check_temperature(temperature)
    # Compare in float32, whatever the compute precision.
    z_a, z_b = tf.cast(z_a, tf.float32), tf.cast(z_b, tf.float32)
    all_a, offset = gather_replicas(z_a)
    all_b, _ = gather_replicas(z_b)
    n, global_n = tf.shape(z_a)[0], tf.shape(all_a)[0]
    targets = offset + tf.range(n)
    self_mask = tf.one_hot(targets, global_n) * _SELF_MASK

    def rows(anchors, same_view, other_view):
        positive_and_cross = similarity(anchors, other_view, kind) / temperature
        same = similarity(anchors, same_view, kind) / temperature - self_mask
        return tf.concat([positive_and_cross, same], axis=1)

    logits = tf.concat([rows(z_a, all_a, all_b), rows(z_b, all_b, all_a)], axis=0)
    return logits, tf.concat([targets, targets], axis=0)


def mean_cross_entropy(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean softmax cross-entropy of integer `targets` [M] under `logits` [M, K], in float32."""
    targets = tf.cast(targets, tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32)))


def nt_xent_loss(z_a: tf.Tensor, z_b: tf.Tensor, temperature: float = 0.5, kind: str = "cosine") -> tf.Tensor:
    """SimCLR's NT-Xent loss: mean over all 2n local anchors of
    -log(exp(sim(i, pos)/tau) / sum_{k != i} exp(sim(i, k)/tau)).

    Args:
        z_a, z_b: [n, d] projections of two views of the same n images (any float dtype).
        temperature: tau > 0.
        kind: the similarity sim, one of `SIMILARITIES`; cosine in the paper.

    Returns:
        A float32 scalar. Under a strategy, the mean over this replica's anchors, with
        negatives from all replicas.

    Example:
        >>> z_a, z_b = tf.random.normal([8, 16]), tf.random.normal([8, 16])
        >>> loss = nt_xent_loss(z_a, z_b, temperature=0.1)
    """
    logits, targets = nt_xent_logits(z_a, z_b, temperature, kind)
    return mean_cross_entropy(targets, logits)


# Where SupCon averages over an anchor's positives: outside the log (L_out, HobbitLong/SupContrast)
# or inside it (L_in, as solo-learn's `simclr_loss_func` sums the positives' exp-similarities).
SUPCON_FORMS = ("out", "in")


def supcon_loss(
    z: tf.Tensor,
    labels: tf.Tensor,
    temperature: float = 0.1,
    kind: str = "cosine",
    form: str = "out",
    base_temperature: float | None = None,
) -> tf.Tensor:
    """SupCon (Khosla et al. 2020) for each anchor i whose positives P(i) are the other rows
    with its label, with p_ia = exp(s_ia/tau) / sum_{a != i} exp(s_ia/tau):

    form="out" (L_out, the paper's choice): -1/|P(i)| sum_{p in P(i)} log p_ip.
    form="in" (L_in as solo-learn computes it): -log sum_{p in P(i)} p_ip; the paper's L_in
        has 1/|P(i)| inside the log, which adds log |P(i)|, a constant, to each anchor's loss.

    The loss is the mean over the anchors that have a positive (the references return inf
    or NaN for the others; with two or more views every anchor has one).

    Args:
        z: [M, D] embeddings of all views (normalised here for cosine).
        labels: [M] integer labels; views of one image share its label.
        temperature: tau > 0.
        kind: the similarity s, one of `SIMILARITIES`.
        form: one of `SUPCON_FORMS`.
        base_temperature: if set, the loss is scaled by tau / base_temperature, as
            HobbitLong/SupContrast's `SupConLoss` does (base 0.07 there); None, as in the
            paper and solo-learn, leaves it unscaled. The factor c scales the gradient: under
            SGD, the same as a learning rate c times larger and a weight decay c times smaller.

    Under a strategy every replica's rows are candidates, and the replicas' losses
    average to the single-device loss on the global batch.
    """
    check_temperature(temperature)
    if form not in SUPCON_FORMS:
        raise UsageError(f"unknown SupCon form {form!r}; choose one of {', '.join(SUPCON_FORMS)}")
    if base_temperature is not None and base_temperature <= 0:
        raise UsageError(f"base_temperature must be > 0 or None, got {base_temperature}")
    z = tf.cast(z, tf.float32)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
    all_z, offset = gather_replicas(z)
    all_labels, _ = gather_replicas(labels)
    rows = offset + tf.range(tf.shape(z)[0])
    not_self = 1.0 - tf.one_hot(rows, tf.shape(all_z)[0])
    logits = similarity(z, all_z, kind) / temperature - (1.0 - not_self) * _SELF_MASK
    log_probability = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    positives = tf.cast(tf.equal(labels[:, None], all_labels[None, :]), tf.float32) * not_self
    count = tf.reduce_sum(positives, axis=1)
    if form == "out":
        per_anchor = -tf.math.divide_no_nan(tf.reduce_sum(positives * log_probability, axis=1), count)
    else:
        # Finite (about 1e9) for an anchor without positives, which the mean leaves out.
        per_anchor = -tf.reduce_logsumexp(log_probability - (1.0 - positives) * _SELF_MASK, axis=1)
    if base_temperature is not None:
        per_anchor *= temperature / base_temperature
    has_positive = tf.cast(count > 0, tf.float32)
    return _replica_share(tf.reduce_sum(per_anchor * has_positive), tf.reduce_sum(has_positive))


def multiview_nt_xent_loss(views: list[tf.Tensor], temperature: float = 0.5, kind: str = "cosine") -> tf.Tensor:
    """NT-Xent over V >= 2 views of the same n images: each view's positives are the
    other V - 1 views of its image, every other view in the global batch a negative. With
    two views it equals `nt_xent_loss`. It is SupCon with the image as the label."""
    if len(views) < 2:
        raise UsageError(f"multi-view NT-Xent needs at least 2 views, got {len(views)}")
    replica = tf.distribute.get_replica_context()
    replica_id = 0 if replica is None else replica.replica_id_in_sync_group
    n = tf.shape(views[0])[0]
    images = tf.cast(replica_id * n + tf.range(n), tf.int64)
    return supcon_loss(tf.concat(views, axis=0), tf.tile(images, [len(views)]), temperature, kind)


def info_nce_logits(
    query: tf.Tensor, positive: tf.Tensor, negatives: tf.Tensor, temperature: float = 0.07
) -> tuple[tf.Tensor, tf.Tensor]:
    """InfoNCE's logits [N, 1 + K] (cosine / tau; the positive in column 0, then the
    negatives) and targets [N] (zeros)."""
    check_temperature(temperature)
    query = tf.math.l2_normalize(tf.cast(query, tf.float32), axis=1)
    positive = tf.math.l2_normalize(tf.cast(positive, tf.float32), axis=1)
    positive_logit = tf.reduce_sum(query * positive, axis=1, keepdims=True)
    logits = tf.concat([positive_logit, similarity(query, negatives)], axis=1) / temperature
    return logits, tf.zeros(tf.shape(query)[0], tf.int32)


def info_nce_loss(query: tf.Tensor, positive: tf.Tensor, negatives: tf.Tensor, temperature: float = 0.07) -> tf.Tensor:
    """InfoNCE as MoCo uses it with a queue: the mean over i of
    -log(exp(cos(q_i, p_i)/tau) / (exp(cos(q_i, p_i)/tau) + sum_k exp(cos(q_i, n_k)/tau))).

    Args:
        query, positive: [N, D]; row i of each is a view of the same image.
        negatives: [K, D], shared by every query (a memory bank or queue).
        temperature: tau > 0.
    """
    logits, targets = info_nce_logits(query, positive, negatives, temperature)
    return mean_cross_entropy(targets, logits)


def _mean_cosine(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    a = tf.math.l2_normalize(tf.cast(a, tf.float32), axis=1)
    b = tf.math.l2_normalize(tf.cast(b, tf.float32), axis=1)
    return tf.reduce_mean(tf.reduce_sum(a * b, axis=1))


def normalized_regression_loss(prediction: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """BYOL's loss: the mean over rows of |p/|p| - z/|z||^2 = 2 - 2 cos(p, z). Stop the
    target's gradient before calling it."""
    return 2.0 - 2.0 * _mean_cosine(prediction, target)


def negative_cosine_loss(prediction: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """SimSiam's D(p, z): minus the mean cosine similarity of the rows, in [-1, 1]. Stop the
    target's gradient before calling it."""
    return -_mean_cosine(prediction, target)


def mocov3_loss(queries: tf.Tensor, keys: tf.Tensor, temperature: float = 0.2) -> tf.Tensor:
    """MoCo v3's contrastive loss (facebookresearch/moco-v3 `moco/builder.py`,
    `MoCo.contrastive_loss`): each query's positive is its own image's key and its
    negatives are the keys of every other image of the global batch (no queue), the
    cross-entropy of cosine / tau scaled by 2 tau, which keeps the gradient's size as tau
    changes.

    Args:
        queries: [n, d] this replica's predictions q.
        keys: [n, d] this replica's keys k (no gradient flows into them).
        temperature: tau > 0.
    """
    check_temperature(temperature)
    queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=1)
    all_keys, offset = gather_replicas(tf.math.l2_normalize(tf.cast(keys, tf.float32), axis=1))
    logits = tf.matmul(queries, all_keys, transpose_b=True) / temperature
    targets = offset + tf.range(tf.shape(queries)[0])
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return 2.0 * temperature * _replica_share(tf.reduce_sum(losses), tf.cast(tf.shape(queries)[0], tf.float32))


def nnclr_loss(neighbours: tf.Tensor, predictions: tf.Tensor, temperature: float = 0.1) -> tf.Tensor:
    """NNCLR's loss one way round (Dwibedi et al. 2021, eq. 2): the mean over images i of
    -log(exp(cos(NN(z_i), p_i)/tau) / sum_k exp(cos(NN(z_i), p_k)/tau)), where NN(z_i) is
    the nearest neighbour of one view's projection in the support set and p_k the other
    view's predictions of the global batch's images. NNCLR averages it both ways round.

    Args:
        neighbours: [n, d] NN(z) of one view of this replica's n images (no gradient).
        predictions: [n, d] the predictor's outputs for the other view of the same images.
        temperature: tau > 0.

    Under a strategy every replica's predictions are candidates, as in solo-learn
    (`solo/losses/nnclr.py`, `nnclr_loss_func`).
    """
    check_temperature(temperature)
    all_predictions, offset = gather_replicas(tf.cast(predictions, tf.float32))
    logits = similarity(neighbours, all_predictions) / temperature
    return mean_cross_entropy(offset + tf.range(tf.shape(neighbours)[0]), logits)


def _off_diagonal_squares(matrix: tf.Tensor) -> tf.Tensor:
    """The sum of the squares of a square matrix's off-diagonal entries."""
    return tf.reduce_sum(tf.square(tf.linalg.set_diag(matrix, tf.zeros_like(tf.linalg.diag_part(matrix)))))


def barlow_twins_loss(z_a: tf.Tensor, z_b: tf.Tensor, redundancy_weight: float = 5e-3) -> tf.Tensor:
    """Barlow Twins' loss (Zbontar et al. 2021): sum_i (1 - C_ii)^2 + lambda sum_{i != j}
    C_ij^2, where C [d, d] is the cross-correlation of the two views' embeddings, each
    normalised per dimension over the batch (batch norm without scale and shift: mean 0,
    biased variance 1, epsilon 1e-5) and C = norm(z_a)^T norm(z_b) / N.

    Args:
        z_a, z_b: [n, d] embeddings of two views of the same n images.
        redundancy_weight: lambda >= 0, the weight of the off-diagonal terms.

    Under a strategy the normalisation and C are over the global batch of N images, as the
    reference's synchronised batch norm and all-reduce of C make them
    (facebookresearch/barlowtwins `main.py`, `BarlowTwins.forward`); every replica returns
    the whole loss.
    """
    z_a, _ = gather_replicas(tf.cast(z_a, tf.float32))
    z_b, _ = gather_replicas(tf.cast(z_b, tf.float32))

    def normalised(z):
        mean, variance = tf.nn.moments(z, axes=[0])
        return (z - mean) * tf.math.rsqrt(variance + 1e-5)

    c = tf.matmul(normalised(z_a), normalised(z_b), transpose_a=True) / tf.cast(tf.shape(z_a)[0], tf.float32)
    on_diagonal = tf.reduce_sum(tf.square(1.0 - tf.linalg.diag_part(c)))
    return on_diagonal + redundancy_weight * _off_diagonal_squares(c)


def vicreg_loss(
    z_a: tf.Tensor,
    z_b: tf.Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
) -> tf.Tensor:
    """VICReg's loss (Bardes et al. 2022): invariance_weight x the mean squared error of
    the two views' embeddings, plus variance_weight x the mean over dimensions of
    max(0, 1 - sqrt(Var(z_j) + 1e-4)) (averaged over the two views), plus
    covariance_weight x the sum of the squared off-diagonal covariances divided by d
    (summed over the two views); variances and covariances are unbiased (N - 1).

    Args:
        z_a, z_b: [n, d] embeddings of two views of the same n images.
        invariance_weight, variance_weight, covariance_weight: the three terms' weights
            (25, 25, 1 in the paper).

    Under a strategy the variances and covariances are over the global batch of N images,
    as in the reference (facebookresearch/vicreg `main_vicreg.py`, `VICReg.forward`, which
    gathers the embeddings with `FullGatherLayer`); the mean squared error is each
    replica's share of the global mean.
    """
    z_a, z_b = tf.cast(z_a, tf.float32), tf.cast(z_b, tf.float32)
    invariance = _replica_share(tf.reduce_sum(tf.square(z_a - z_b)), tf.cast(tf.size(z_a), tf.float32))
    variance, covariance = 0.0, 0.0
    for z in (z_a, z_b):
        z, _ = gather_replicas(z)
        z = z - tf.reduce_mean(z, axis=0)
        count, dim = tf.cast(tf.shape(z)[0], tf.float32), tf.cast(tf.shape(z)[1], tf.float32)
        std = tf.sqrt(tf.reduce_sum(tf.square(z), axis=0) / (count - 1.0) + 1e-4)
        variance += tf.reduce_mean(tf.nn.relu(1.0 - std)) / 2.0
        covariance += _off_diagonal_squares(tf.matmul(z, z, transpose_a=True) / (count - 1.0)) / dim
    return invariance_weight * invariance + variance_weight * variance + covariance_weight * covariance


def margin_contrastive_loss(x1: tf.Tensor, x2: tf.Tensor, is_similar: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """Hadsell, Chopra & LeCun's contrastive loss: the mean over pairs of
    y d^2 + (1 - y) max(0, m - d)^2, with d the Euclidean distance and y = 1 for similar
    pairs (no 1/2 factor)."""
    x1, x2 = tf.cast(x1, tf.float32), tf.cast(x2, tf.float32)
    y = tf.cast(tf.reshape(is_similar, [-1]), tf.float32)
    squared = tf.reduce_sum(tf.square(x1 - x2), axis=1)
    # d^2 needs no square root; the hinge's gradient stays finite at d = 0.
    distance = tf.sqrt(tf.maximum(squared, 1e-12))
    return tf.reduce_mean(y * squared + (1.0 - y) * tf.square(tf.nn.relu(margin - distance)))


def triplet_loss(anchor: tf.Tensor, positive: tf.Tensor, negative: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """FaceNet's triplet loss: the mean of max(0, |a - p|^2 - |a - n|^2 + margin)."""
    anchor, positive, negative = (tf.cast(x, tf.float32) for x in (anchor, positive, negative))
    to_positive = tf.reduce_sum(tf.square(anchor - positive), axis=1)
    to_negative = tf.reduce_sum(tf.square(anchor - negative), axis=1)
    return tf.reduce_mean(tf.nn.relu(to_positive - to_negative + margin))


def mined_triplet_loss(
    embeddings: tf.Tensor, labels: tf.Tensor, margin: float = 1.0, mining: str = "batch_hard"
) -> tf.Tensor:
    """The triplet loss on triplets mined from a labelled batch (squared Euclidean).

    mining="batch_hard" (Hermans et al. 2017): one triplet per anchor, its farthest
        positive and nearest negative; the mean over anchors that have both.
    mining="semi_hard" (FaceNet): one triplet per (anchor, positive) pair, with the
        nearest negative farther than the positive, or the farthest negative when there
        is none; the mean over the pairs that have a negative.

    Under a strategy positives and negatives come from the whole global batch.
    """
    if mining not in ("batch_hard", "semi_hard"):
        raise UsageError(f"unknown mining {mining!r}; choose batch_hard or semi_hard")
    embeddings = tf.cast(embeddings, tf.float32)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
    all_embeddings, offset = gather_replicas(embeddings)
    all_labels, _ = gather_replicas(labels)
    distances = tf.maximum(_squared_distances(embeddings, all_embeddings), 0.0)
    not_self = 1.0 - tf.one_hot(offset + tf.range(tf.shape(embeddings)[0]), tf.shape(all_embeddings)[0])
    same = tf.cast(tf.equal(labels[:, None], all_labels[None, :]), tf.float32)
    positive, negative = same * not_self, 1.0 - same
    has_negative = tf.reduce_max(negative, axis=1) > 0
    if mining == "batch_hard":
        hardest_positive = tf.reduce_max(distances * positive, axis=1)
        nearest_negative = tf.reduce_min(distances + (1.0 - negative) * _SELF_MASK, axis=1)
        valid = tf.cast((tf.reduce_max(positive, axis=1) > 0) & has_negative, tf.float32)
        losses = tf.nn.relu(hardest_positive - nearest_negative + margin)
        return _replica_share(tf.reduce_sum(losses * valid), tf.reduce_sum(valid))
    # [anchor, positive, negative] distances for every candidate triple.
    to_positive, to_negative = distances[:, :, None], distances[:, None, :]
    is_negative = tf.cast(negative[:, None, :], tf.bool) & tf.ones_like(to_positive, tf.bool)
    farther = is_negative & (to_negative > to_positive)
    semi_hard = tf.reduce_min(tf.where(farther, to_negative, _SELF_MASK), axis=2)
    farthest = tf.reduce_max(tf.where(is_negative, to_negative, -_SELF_MASK), axis=2)
    chosen = tf.where(tf.reduce_any(farther, axis=2), semi_hard, farthest)
    losses = tf.nn.relu(distances - chosen + margin)
    valid = positive * tf.cast(has_negative, tf.float32)[:, None]
    return _replica_share(tf.reduce_sum(losses * valid), tf.reduce_sum(valid))
