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


def numpy_supcontrast(features, labels, temperature, base_temperature):
    """HobbitLong/SupContrast, losses.py, `SupConLoss.forward` with contrast_mode='all':
    features [bsz, n_views, d], already L2-normalised (its model normalises them), the
    views stacked view by view; every anchor needs a positive (NaN otherwise)."""
    features = np.asarray(features, np.float64)
    n_views = features.shape[1]
    contrast = np.concatenate([features[:, v] for v in range(n_views)])
    labels = np.asarray(labels).reshape(-1, 1)
    mask = np.tile((labels == labels.T).astype(np.float64), (n_views, n_views))
    logits = contrast @ contrast.T / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    logits_mask = 1.0 - np.eye(len(contrast))
    mask = mask * logits_mask
    log_prob = logits - np.log((np.exp(logits) * logits_mask).sum(axis=1, keepdims=True) + 1e-9)
    mean_log_prob_pos = (mask * log_prob).sum(axis=1) / mask.sum(axis=1)
    return float(np.mean(-(temperature / base_temperature) * mean_log_prob_pos))


def numpy_solo_supcon(z, indexes, temperature, world_size=1):
    """vturrisi/solo-learn, solo/losses/simclr.py, `simclr_loss_func` (as solo/methods/supcon.py
    calls it, with the class labels as indexes): each of `world_size` processes holds an
    equal slice of the rows; its anchors meet the gathered rows, its positives mask is
    label equality without itself, its negatives mask label inequality, and its loss is
    -mean log(pos / (pos + neg)). Returns the processes' mean, the loss DDP descends."""
    z = unit(np.asarray(z, np.float64))
    indexes = np.asarray(indexes)
    n = len(z) // world_size
    losses = []
    for rank in range(world_size):
        local, local_indexes = z[rank * n : (rank + 1) * n], indexes[rank * n : (rank + 1) * n]
        sim = np.exp(local @ z.T / temperature)
        pos_mask = (local_indexes[:, None] == indexes[None, :]).astype(np.float64)
        pos_mask[np.arange(n), rank * n + np.arange(n)] = 0.0
        neg_mask = (local_indexes[:, None] != indexes[None, :]).astype(np.float64)
        pos, neg = (sim * pos_mask).sum(axis=1), (sim * neg_mask).sum(axis=1)
        losses.append(-np.mean(np.log(pos / (pos + neg))))
    return float(np.mean(losses))


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


def numpy_lightly_symmetric_moco(q0, q1, k0, k1, bank, position, temperature):
    """lightly's MoCo loss on CIFAR-10: lightly-ai/lightly,
    docs/source/getting_started/benchmarks/cifar10_benchmark.py, `MocoModel.training_step`,
    with `NTXentLoss(memory_bank_size=...)` (lightly/loss/ntx_ent_loss.py, `forward`, and
    lightly/models/modules/memory_bank.py, `MemoryBankModule.forward`): each of the two
    criterion calls takes the bank's rows as negatives and then writes its keys over the
    rows from the bank's pointer, so the second call's negatives hold the first call's keys.
    The loss is the mean of the two calls'."""
    first = numpy_info_nce(q0, k1, bank, temperature)
    bank = unit(np.asarray(bank, np.float64)).copy()
    rows = (position + np.arange(len(k1))) % len(bank)
    bank[rows] = unit(k1)
    second = numpy_info_nce(q1, k0, bank, temperature)
    return 0.5 * (first + second)


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


def numpy_solo_lars_step(
    w, g, buffer, learning_rate, *, momentum, weight_decay, eta, nesterov, clip_lr, exclude_bias_n_norm, eps=1e-8
):
    """One step of solo-learn's LARS on one variable, returning the new (w, buffer): the
    maths of vturrisi/solo-learn, solo/utils/lars.py, `LARS.step` (dampening 0). Norms are
    of w and the raw gradient; weight decay and the trust ratio apply together, only when
    both norms are nonzero, and not to 1-D variables under `exclude_bias_n_norm`. Torch
    starts the buffer at the first step's d_p, the same as a zero buffer here."""
    w, g, buffer = (np.asarray(x, np.float64) for x in (w, g, buffer))
    d_p = g
    if w.ndim != 1 or not exclude_bias_n_norm:
        w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
        if w_norm != 0 and g_norm != 0:
            lars_lr = eta * w_norm / (g_norm + w_norm * weight_decay + eps)
            if clip_lr:
                with np.errstate(divide="ignore"):  # at lr 0, inf as torch's tensor division gives, then 1
                    lars_lr = min(lars_lr / np.float64(learning_rate), 1.0)
            d_p = (g + weight_decay * w) * lars_lr
    buffer = momentum * buffer + d_p
    d_p = d_p + momentum * buffer if nesterov else buffer
    return w - learning_rate * d_p, buffer


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


def numpy_barlow_twins(z1, z2, lambd):
    """facebookresearch/barlowtwins, main.py, `BarlowTwins.forward` with `off_diagonal`, on
    one device: each view through BatchNorm1d(affine=False) in training mode (batch mean,
    biased variance, eps 1e-5), c = bn(z1).T @ bn(z2) / batch_size, then
    sum((diag(c) - 1)^2) + lambd * sum(off-diagonal(c)^2)."""
    z1, z2 = (np.asarray(z, np.float64) for z in (z1, z2))
    batch_size, d = z1.shape

    def bn(z):
        return (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + 1e-5)

    c = bn(z1).T @ bn(z2) / batch_size
    on_diag = np.sum((np.diagonal(c) - 1) ** 2)
    # The reference's off_diagonal: drop the last entry, view as (d - 1, d + 1), drop column 0.
    off_diag = np.sum(c.flatten()[:-1].reshape(d - 1, d + 1)[:, 1:] ** 2)
    return float(on_diag + lambd * off_diag)


def numpy_vicreg(x, y, sim_coeff, std_coeff, cov_coeff):
    """facebookresearch/vicreg, main_vicreg.py, `VICReg.forward` with `off_diagonal`, on one
    device (the gather is the identity): MSE of x and y, then, with x and y centred, the
    hinge on sqrt(unbiased variance + 1e-4) averaged over the views, and the squared
    off-diagonal covariances (divided by batch_size - 1) over num_features, summed."""
    x, y = (np.asarray(z, np.float64) for z in (x, y))
    batch_size, num_features = x.shape
    repr_loss = np.mean((x - y) ** 2)
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    std_x, std_y = np.sqrt(x.var(axis=0, ddof=1) + 0.0001), np.sqrt(y.var(axis=0, ddof=1) + 0.0001)
    std_loss = np.mean(np.maximum(0, 1 - std_x)) / 2 + np.mean(np.maximum(0, 1 - std_y)) / 2
    cov_x, cov_y = x.T @ x / (batch_size - 1), y.T @ y / (batch_size - 1)
    off = ~np.eye(num_features, dtype=bool)
    cov_loss = np.sum(cov_x[off] ** 2) / num_features + np.sum(cov_y[off] ** 2) / num_features
    return float(sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss)


def numpy_nnclr(nn, p, temperature):
    """vturrisi/solo-learn, solo/losses/nnclr.py, `nnclr_loss_func`, on one device: the
    neighbours and predictions L2-normalised, logits nn @ p.T / temperature, and the mean
    cross-entropy with each row's own image as the label."""
    logits = unit(np.asarray(nn, np.float64)) @ unit(np.asarray(p, np.float64)).T / temperature
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.mean(np.diagonal(log_softmax)))


def numpy_lightly_simclr_head(h, layers, epsilon=1e-5):
    """lightly-ai/lightly, lightly/models/modules/heads.py, `SimCLRProjectionHead` (batch_norm=
    True) through `ProjectionHead.forward` in training mode: each layer nn.Linear without bias
    (`bias=not bool(batch_norm)`), then nn.BatchNorm1d on the batch's statistics (biased
    variance), ReLU on every layer but the last. `layers`: (kernel [in, out], gamma, beta)."""
    x = np.asarray(h, np.float64)
    for index, (kernel, gamma, beta) in enumerate(layers):
        x = x @ kernel
        x = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + epsilon) * gamma + beta
        if index < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def numpy_nearest_neighbours(z, bank):
    """lightly-ai/lightly, lightly/models/modules/nn_memory_bank.py,
    `NNMemoryBankModule.forward`: the bank's row of highest cosine similarity to each row of
    z (returned normalised here, as the queue stores it)."""
    bank = unit(np.asarray(bank, np.float64))
    return bank[np.argmax(unit(np.asarray(z, np.float64)) @ bank.T, axis=1)]


def numpy_simclr_center_window(image_height: int, image_width: int, size: int, proportion: float = 0.875):
    """google-research/simclr `tf2/data_util.py`, `center_crop` with `_compute_crop_shape`, for a
    `size` x `size` output: the window [top, left, height, width] it crops before resizing."""
    aspect_ratio = size / size
    if aspect_ratio > image_width / image_height:  # _requested_aspect_ratio_wider_than_image
        crop_height = int(np.rint(proportion / aspect_ratio * image_width))
        crop_width = int(np.rint(proportion * image_width))
    else:  # _image_wider_than_requested_aspect_ratio
        crop_height = int(np.rint(proportion * image_height))
        crop_width = int(np.rint(proportion * aspect_ratio * image_height))
    offset_height = ((image_height - crop_height) + 1) // 2
    offset_width = ((image_width - crop_width) + 1) // 2
    return [offset_height, offset_width, crop_height, crop_width]


def numpy_pil_gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """PIL's GaussianBlur(radius=sigma) (python-pillow src/libImaging/BoxBlur.c) on a float
    [H, W, C] image, without its rounding to 8 bits after each pass: three passes of one
    box per axis, of a fractional radius whose variance is sigma^2 / 3."""
    variance = sigma**2 / 3
    whole = np.floor((np.sqrt(12 * variance + 1) - 1) / 2)
    radius = whole + (2 * whole + 1) * (whole * (whole + 1) - 3 * variance) / (6 * (variance - (whole + 1) ** 2))
    inner = 1 / (2 * radius + 1)
    weights = {k: inner for k in range(-int(whole), int(whole) + 1)}
    weights[-int(whole) - 1] = weights[int(whole) + 1] = (1 - (2 * whole + 1) * inner) / 2
    out = image.astype(np.float64)
    for axis in (1, 0):  # along the rows, then the columns
        size = out.shape[axis]
        for _ in range(3):
            # Each pass reads past the border as the edge pixel.
            reads = {k: np.clip(np.arange(size) + k, 0, size - 1) for k in weights}
            out = sum(w * np.take(out, reads[k], axis=axis) for k, w in weights.items())
    return out


def numpy_rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] RGB in [0, 1] to HSV, hue in turns (google-deepmind byol augmentations.py,
    as TensorFlow's kernel; torchvision's `_rgb2hsv` is the same)."""
    r, g, b = np.moveaxis(rgb.astype(np.float64), -1, 0)
    value = np.max([r, g, b], axis=0)
    spread = value - np.min([r, g, b], axis=0)
    saturation = np.where(value > 0, spread / np.where(value > 0, value, 1), 0.0)
    safe = np.where(spread > 0, spread, 1)
    hue = np.where(r == value, (g - b) / safe, np.where(g == value, 2 + (b - r) / safe, 4 + (r - g) / safe)) / 6
    hue = np.where(spread > 0, hue % 1.0, 0.0)
    return np.stack([hue, saturation, value], axis=-1)


def numpy_hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    hue, saturation, value = np.moveaxis(hsv, -1, 0)
    chroma = saturation * value
    sector = (hue % 1.0) * 6
    middle = chroma * (1 - np.abs(sector % 2 - 1))
    zero = np.zeros_like(chroma)
    # (r, g, b) before adding value - chroma, for each sixth of the hue circle.
    sixths = [(chroma, middle, zero), (middle, chroma, zero), (zero, chroma, middle)]
    sixths += [(zero, middle, chroma), (middle, zero, chroma), (chroma, zero, middle)]
    index = np.minimum(np.floor(sector).astype(int), 5)
    rgb = np.stack([np.choose(index, [sixth[c] for sixth in sixths]) for c in range(3)], axis=-1)
    return rgb + (value - chroma)[..., None]


def numpy_shift_hue(image: np.ndarray, shift: float) -> np.ndarray:
    hsv = numpy_rgb_to_hsv(image)
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    return numpy_hsv_to_rgb(hsv)


def numpy_gray(image: np.ndarray) -> np.ndarray:
    """[H, W, 1] luma, with the weights of TensorFlow, torchvision and BYOL."""
    return image @ np.array([0.2989, 0.587, 0.114])[:, None]


# One step of each colour jitter on a float [H, W, 3] image, with its drawn parameter: a
# factor, or for BYOL's brightness and either hue a shift. Each step is clipped to [0, 1].
# torchvision's ColorJitter (transforms/_functional_tensor.py), which Barlow Twins, VICReg
# and solo-learn call: brightness, contrast and saturation blend with black, the gray
# image's mean and the gray image.
NUMPY_TORCHVISION_JITTER = {
    "brightness": lambda x, f: np.clip(f * x, 0, 1),
    "contrast": lambda x, f: np.clip(f * x + (1 - f) * numpy_gray(x).mean(), 0, 1),
    "saturation": lambda x, f: np.clip(f * x + (1 - f) * numpy_gray(x), 0, 1),
    "hue": lambda x, shift: np.clip(numpy_shift_hue(x, shift), 0, 1),
}


def _byol_saturation(image, factor):
    hsv = numpy_rgb_to_hsv(image)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 1)
    return np.clip(numpy_hsv_to_rgb(hsv), 0, 1)


# BYOL's (google-deepmind byol/utils/augmentations.py): brightness adds a shift, contrast
# scales each channel about its own mean, saturation scales the HSV saturation.
NUMPY_BYOL_JITTER = {
    "brightness": lambda x, shift: np.clip(x + shift, 0, 1),
    "contrast": lambda x, f: np.clip(f * (x - x.mean(axis=(0, 1))) + x.mean(axis=(0, 1)), 0, 1),
    "saturation": _byol_saturation,
    "hue": lambda x, shift: np.clip(numpy_shift_hue(x, shift), 0, 1),
}


def numpy_mocov3(q, k, temperature):
    """facebookresearch/moco-v3, moco/builder.py, `MoCo.contrastive_loss` on one process:
    cross-entropy of the normalised queries against every key (the positive on the
    diagonal), times 2 tau."""
    logits = unit(q) @ unit(k).T / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probability = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.mean(np.diag(log_probability)) * 2 * temperature)


def numpy_mocov3_positions(grid, dim, temperature=10000.0):
    """facebookresearch/moco-v3, vits.py, `build_2d_sincos_position_embedding` for a
    grid x grid of patches, without the [CLS] row: torch.meshgrid's "ij" indexing makes
    patch k's first coordinate k // grid."""
    grid_w, grid_h = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32), indexing="ij")
    pos_dim = dim // 4
    omega = 1.0 / temperature ** (np.arange(pos_dim, dtype=np.float32) / pos_dim)
    out_w = np.einsum("m,d->md", grid_w.flatten(), omega)
    out_h = np.einsum("m,d->md", grid_h.flatten(), omega)
    return np.concatenate([np.sin(out_w), np.cos(out_w), np.sin(out_h), np.cos(out_h)], axis=1)
