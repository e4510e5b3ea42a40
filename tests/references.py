"""NumPy transcriptions of the papers' reference code and of the losses' definitions: the
expected values the tests compare the library with, computed independently of TensorFlow."""

import numpy as np


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


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


def numpy_supcon(z, labels, temperature):
    """Khosla et al.'s L_out, anchor by anchor."""
    z = unit(np.asarray(z, np.float64))
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        log_denominator = np.log(sum(np.exp(z[i] @ z[a] / temperature) for a in others))
        losses.append(-np.mean([z[i] @ z[p] / temperature - log_denominator for p in positives]))
    return np.mean(losses)


def numpy_similarity_nt_xent(z_a, z_b, temperature, kind):
    z = np.concatenate([z_a, z_b]).astype(np.float64)
    sim = {
        "dot": lambda u, v: u @ v,
        "neg_squared_euclidean": lambda u, v: -np.sum((u - v) ** 2),
    }[kind]
    n, total = len(z_a), 0.0
    for i in range(2 * n):
        logits = np.array([sim(z[i], z[k]) / temperature for k in range(2 * n)])
        others = [k for k in range(2 * n) if k != i]
        total += -(logits[(i + n) % (2 * n)] - np.log(np.sum(np.exp(logits[others]))))
    return total / (2 * n)


def numpy_triplets(x, labels, margin, mining):
    """Every anchor (batch_hard) or (anchor, positive) pair (semi_hard), mined by loops."""
    d = lambda u, v: np.sum((u - v) ** 2)  # noqa: E731
    losses = []
    for a in range(len(x)):
        positives = [p for p in range(len(x)) if p != a and labels[p] == labels[a]]
        negatives = [n for n in range(len(x)) if labels[n] != labels[a]]
        if not positives or not negatives:
            continue
        if mining == "batch_hard":
            hardest = max(d(x[a], x[p]) for p in positives)
            losses.append(max(0.0, hardest - min(d(x[a], x[n]) for n in negatives) + margin))
            continue
        for p in positives:
            farther = [d(x[a], x[n]) for n in negatives if d(x[a], x[n]) > d(x[a], x[p])]
            chosen = min(farther) if farther else max(d(x[a], x[n]) for n in negatives)
            losses.append(max(0.0, d(x[a], x[p]) - chosen + margin))
    return np.mean(losses)


def numpy_info_nce(queries, keys, negatives, temperature):
    queries, keys = unit(queries), unit(keys)
    positive = np.exp(np.sum(queries * keys, axis=1) / temperature)
    negative = np.exp(queries @ unit(negatives).T / temperature).sum(axis=1)
    return float(np.mean(-np.log(positive / (positive + negative))))


def numpy_cosines(a, b):
    return np.sum(unit(a) * unit(b), axis=1)


def numpy_lars_step(w, g, v, learning_rate, *, momentum, weight_decay, eta, nesterov, decay, adapt):
    """One step of SimCLR's LARS on one variable, returning the new (w, v): the maths of
    google-research/simclr, tf2/lars_optimizer.py, `LARSOptimizer._resource_apply_dense`
    with classic_momentum=True (its default). `decay` and `adapt` say that the variable's
    name matches no pattern of `exclude_from_weight_decay`, `exclude_from_layer_adaptation`."""
    w, g, v = (np.asarray(x, np.float64) for x in (w, g, v))
    if decay and weight_decay:
        g = g + weight_decay * w
    trust = 1.0
    if adapt:
        w_norm, g_norm = np.linalg.norm(w.ravel()), np.linalg.norm(g.ravel())
        trust = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
    scaled_lr = learning_rate * trust
    v = momentum * v + scaled_lr * g
    update = momentum * v + scaled_lr * g if nesterov else v
    return w - update, v


def numpy_torch_sgd_step(w, g, buffer, learning_rate, *, momentum, weight_decay):
    """One step of torch.optim.SGD (no dampening, no Nesterov), as facebookresearch/moco,
    main_moco.py builds it, on one variable, returning the new (w, buffer): L2 joins the
    gradient before the momentum buffer, and the learning rate scales the whole buffer.
    Torch starts the buffer at g, the same as a zero buffer here."""
    w, g, buffer = (np.asarray(x, np.float64) for x in (w, g, buffer))
    g = g + weight_decay * w
    buffer = momentum * buffer + g
    return w - learning_rate * buffer, buffer


def numpy_simclr_loss(hidden: np.ndarray, temperature: float, large: float = 1e9) -> float:
    """google-research/simclr tf2/objective.py, add_contrastive_loss (one replica): the
    projections of view 1 then view 2, L2-normalised; loss_a + loss_b averaged over N."""
    hidden = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
    hidden1, hidden2 = np.split(hidden.astype(np.float64), 2)
    n = len(hidden1)
    labels, masks = np.eye(n, 2 * n), np.eye(n)

    def cross_entropy(logits):
        logits = logits - logits.max(axis=1, keepdims=True)
        log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -(labels * log_softmax).sum(axis=1)

    logits_aa = hidden1 @ hidden1.T / temperature - masks * large
    logits_bb = hidden2 @ hidden2.T / temperature - masks * large
    logits_ab = hidden1 @ hidden2.T / temperature
    logits_ba = hidden2 @ hidden1.T / temperature
    loss_a = cross_entropy(np.concatenate([logits_ab, logits_aa], axis=1))
    loss_b = cross_entropy(np.concatenate([logits_ba, logits_bb], axis=1))
    return float(np.mean(loss_a + loss_b))


def numpy_simclr_linear_first_step(features, labels, num_classes, learning_rate, momentum=0.9):
    """The linear head (W [D, K], b [K]) after the first step of SimCLR's linear evaluation
    on one batch of raw features: zero-initialised (`--zero_init_logits_layer`), mean softmax
    cross-entropy, then tf.keras SGD with Nesterov momentum (`--optimizer=momentum`), whose
    first step from a zero velocity v = -lr * g moves w by momentum * v - lr * g."""
    x = np.asarray(features, np.float64)
    # The softmax of zero logits is uniform.
    error = np.full((len(x), num_classes), 1.0 / num_classes) - np.eye(num_classes)[labels]
    gradient_w, gradient_b = x.T @ error / len(x), error.mean(0)
    move = -(1 + momentum) * learning_rate
    return move * gradient_w, move * gradient_b
