"""What a representation is worth: frozen features, the linear protocols papers report
(`LINEAR_PROTOCOLS`), and the labelled data (few-label subsets, validation splits carved
from the training split) that evaluations run on."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Iterable

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf.augmentation import RandomHorizontalFlip, RandomResizedCrop, resolve_flip
from contrastive_tf.data import UNLABELED, ImageData, Split, is_small, load_data, streamed_split, to_unit_range
from contrastive_tf.errors import UsageError

STANDARDISED, SIMCLR, LBFGS = "standardised", "simclr", "lbfgs"
# Tried from the strongest down; the penalty is l2 * ||W||^2 on a mean loss, as Keras' L2.
L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
# The logistic regression holds at most this many entries of its features in float64
# (256 MB): MNIST's 60,000 x 256 and CIFAR-10's 50,000 x 512 whole, as before.
FLOAT64_CHUNK = 2**25
# SimCLR evaluates images larger than CIFAR's on a centred crop of this share of the side.
CENTER_CROP_PROPORTION = 0.875


def extract_features(encoder: keras.Model, split: Split, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """h float32 [N, D] for every image of `split` (inference mode, no augmentation), and
    the labels [N], in one pass over it: a split filtered out of a large one costs a read of
    the large one per pass."""
    examples = split.dataset.map(lambda image, label: (to_unit_range(image), label), tf.data.AUTOTUNE)
    label_batches = []

    def image_batches():
        for images, labels in examples.batch(batch_size).prefetch(tf.data.AUTOTUNE):
            label_batches.append(labels.numpy())
            yield images

    features = _predict(encoder, image_batches(), split.num_examples)
    return features, np.concatenate([np.zeros(0, np.int64), *label_batches])


def _predict(encoder: keras.Model, batches: Iterable[tf.Tensor], num_examples: int) -> np.ndarray:
    """h float32 [N, D] of batches of float images, in their order, in inference mode,
    written batch by batch into one array of `num_examples` rows (N, fewer or more for a
    streamed split, whose count is that of its listed files or estimated).

    One trace per call, whatever the batch sizes: Keras' `predict` traced again for the
    last, smaller batch and for every new model, and TensorFlow warned of retracing when
    a run probed a few encoders. An encoder built under a strategy (the kNN
    monitor's) is read in the cross-replica context, its mirrored weights as they are.
    """
    infer = tf.function(
        functools.partial(encoder, training=False),
        input_signature=[tf.TensorSpec((None, *encoder.input_shape[1:]), tf.float32)],
    )
    features = np.empty((num_examples, encoder.output_shape[-1]), np.float32)
    row = 0
    for batch in batches:
        output = tf.cast(infer(batch), tf.float32).numpy()
        if row + len(output) > len(features):  # a stream's count is estimated (TFRecords): grow
            features = np.resize(features, (2 * (row + len(output)), features.shape[1]))
        features[row : row + len(output)] = output
        row += len(output)
    # A streamed split may yield fewer: the files found unreadable while reading it.
    return features[:row]


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows whose highest score is at their label (0 for no rows)."""
    return float(np.mean(np.argmax(scores, axis=1) == labels)) if len(labels) else 0.0


def split_labels(split: Split) -> np.ndarray:
    """The labels of `split`, in order; for a streamed split, of every listed image, read
    without decoding one (the indices `split_subset` takes)."""
    if split.stream is not None:
        labels = split.stream.labels()
    else:
        labels = split.dataset.map(lambda image, label: label)
    return np.concatenate([np.zeros(0, np.int64), *labels.batch(65_536).as_numpy_iterator()])


def labelled_data(dataset: str, data_dir: str | None, image_shape: tuple[int, int, int], **source_options) -> ImageData:
    """`dataset` at an encoder's image size, checked to hold what an evaluation needs:
    labels and a test split. UsageError otherwise. `source_options`: `load_data`'s
    `SOURCE_OPTIONS` (splits, TFRecord keys)."""
    height, width, channels = image_shape
    data = load_data(dataset, data_dir, image_size=height if height == width else None, **source_options)
    if data.image_shape[-1] != channels:
        raise UsageError(
            f"{dataset} has {data.image_shape[-1]}-channel images but the encoder takes {channels}; "
            "evaluate on data like the data it was pretrained on"
        )
    if data.image_shape[:2] != (height, width):
        raise UsageError(f"{dataset} images are {data.image_shape[:2]} but the encoder takes {(height, width)}")
    if not data.num_classes or data.test is None:
        raise UsageError(
            f"{dataset} has no labelled test split; evaluation needs one (an .npz with x_test and y_test, "
            "or a folder with train/ and test/ class folders)"
        )
    return data


def stratified_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of `fraction` of the labelled examples of each class, at least one
    per class, drawn with `seed`: 1% of CIFAR-10's 5,000 per class is 50 per class."""
    if not 0 < fraction <= 1:
        raise UsageError(f"label_fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[labels != UNLABELED]):
        members = np.flatnonzero(labels == label)
        chosen.append(rng.choice(members, max(1, round(fraction * len(members))), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def labelled_subset(data: ImageData, fraction: float, seed: int = 0) -> ImageData:
    """`data` with its training split cut to `stratified_indices`; unchanged at 1.0
    when every training example is labelled."""
    labels = split_labels(data.train)
    if fraction == 1.0 and np.all(labels != UNLABELED):
        return data
    return dataclasses.replace(data, train=split_subset(data.train, stratified_indices(labels, fraction, seed)))


def stratified_sample(split: Split, size: int, seed: int = 0) -> Split:
    """About `size` examples of `split`, the same share of every class: a fair sample even
    of a split stored class by class (an image folder), where the first `size` are not."""
    if split.num_examples <= size:
        return split
    return split_subset(split, stratified_indices(split_labels(split), size / split.num_examples, seed))


def split_subset(split: Split, indices: np.ndarray) -> Split:
    """The examples of `split` at `indices`, in their order in `split`; a streamed split
    reads only those files."""
    # A stream's listing may hold more than its estimated count (TFRecords).
    listed = split.num_examples
    if split.stream is not None:
        listed = max(split.stream.num_examples, int(indices.max(initial=-1)) + 1)
    keep = np.zeros(listed, bool)
    keep[indices] = True
    if split.stream is not None:
        return streamed_split(split.stream, split.decode, tuple(split.dataset.element_spec[0].shape), keep)
    mask = tf.constant(keep)
    subset = split.dataset.enumerate().filter(lambda index, example: mask[index]).map(lambda _, example: example)
    # A filter hides the size; Keras wants it to know when an epoch ends.
    subset = subset.apply(tf.data.experimental.assert_cardinality(int(keep.sum())))
    return Split(subset, int(keep.sum()))


def validation_indices(labels: np.ndarray, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (training, validation) indices: `fraction` of every class's labelled examples
    (`stratified_indices`, drawn with `seed`) held out for validation, every other example
    kept for training. Model selection and the kNN monitor score on the validation part,
    so that the test split is read for the final score only."""
    if not 0 < fraction < 1:
        raise UsageError(f"validation_fraction must be in (0, 1), got {fraction}")
    classes, counts = np.unique(labels[labels != UNLABELED], return_counts=True)
    if np.any(counts < 2):
        raise UsageError(
            f"class {classes[counts < 2][0]} has a single labelled example; a validation split needs at least "
            "two of every class: use more labels"
        )
    held_out = stratified_indices(labels, fraction, seed)
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


def validation_split(split: Split, fraction: float = 0.1, seed: int = 0) -> tuple[Split, Split]:
    """The (training, validation) parts of `split` by `validation_indices`: disjoint, the
    validation part `fraction` of every class, drawn with `seed`."""
    train, held_out = validation_indices(split_labels(split), fraction, seed)
    return split_subset(split, train), split_subset(split, held_out)


@dataclasses.dataclass
class ProbeResult:
    """The probe's test accuracy, its class scores (logits) for every test example, its
    per-epoch training loss and accuracy (none for lbfgs, which has no epochs), the linear
    protocol that made it and the settings it ran with (for lbfgs, the l2 it chose)."""

    top1_accuracy: float
    num_train: int
    num_test: int
    test_scores: np.ndarray | None = None
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    protocol: str = STANDARDISED
    settings: dict = dataclasses.field(default_factory=dict)


def linear_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    l2: float = 1e-4,
    tolerance: float = 1e-4,
) -> ProbeResult:
    """The "standardised" protocol: top-1 accuracy of a multinomial logistic regression with
    the penalty l2 * ||W||^2, on frozen features standardised with the training set's
    statistics (which makes it insensitive to the scale of h).

    The regression is convex, so it is solved to its minimum (`fit_logistic_regression`,
    L-BFGS to gradient entries <= `tolerance`): seconds for 10,000 images, no seed, and no
    schedule to tune. (Until issue 15 it ran 40 epochs of Adam on the same objective; on
    the default run's features the two agree within 0.1 points.)
    """
    mean, std = train_features.mean(0), train_features.std(0) + 1e-6
    kernel, bias = fit_logistic_regression(
        (train_features - mean) / std, train_labels, num_classes, l2, tolerance=tolerance
    )
    scores = (((test_features - mean) / std) @ kernel + bias).astype(np.float32)
    settings = {"l2": l2, "tolerance": tolerance}
    return ProbeResult(
        top1_accuracy(scores, test_labels), len(train_features), len(test_features), scores, {}, STANDARDISED, settings
    )


def simclr_views(
    split: Split, epoch: int, seed: int = 0, flip: bool | None = None, batch_size: int = 512
) -> tf.data.Dataset:
    """Batches of float views [B, H, W, C] in [0, 1] of every image of `split`, in order:
    SimCLR's augmentation for linear evaluation, a random resized crop (area 0.08-1,
    aspect 3/4-4/3) then a horizontal flip (`flip=None`: colour images only, by
    `resolve_flip`), no colour distortion. Each (seed, epoch) draws its own views, the
    same ones on every call."""
    crop = RandomResizedCrop(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    flipper = RandomHorizontalFlip() if resolve_flip(flip, split.dataset.element_spec[0].shape[-1]) else None
    epoch_seed = tf.constant([seed, epoch], tf.int64)

    def views(index: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        # A seed per (epoch, batch) rather than the layers' counters, which parallel maps reach in any order.
        batch_seed = tf.random.experimental.stateless_fold_in(epoch_seed, index)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(batch_seed, 2))
        images = crop.augment(to_unit_range(batch[0]), crop_seed)
        return images if flipper is None else flipper.augment(images, flip_seed)

    options = tf.data.Options()
    options.deterministic = True  # the features must come in the labels' order
    batches = split.dataset.batch(batch_size).enumerate()
    return batches.map(views, num_parallel_calls=tf.data.AUTOTUNE).with_options(options)


def _center_crop(images: tf.Tensor) -> tf.Tensor:
    """The centre CENTER_CROP_PROPORTION of each side, resized back bicubically."""
    size = tf.shape(images)[1:3]
    cropped = tf.image.central_crop(images, CENTER_CROP_PROPORTION)
    return tf.clip_by_value(tf.image.resize(cropped, size, method="bicubic"), 0.0, 1.0)


def _simclr_classifier(feature_dim: int, num_classes: int, learning_rate: float, steps: int, l2: float) -> keras.Model:
    """A zero-initialised linear layer, compiled with SGD, Nesterov momentum 0.9 and a
    cosine decay of `learning_rate` to 0 over `steps` with no warm-up."""
    classifier = keras.Sequential(
        [
            keras.Input((feature_dim,)),
            keras.layers.Dense(
                num_classes,
                kernel_initializer="zeros",
                kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
                dtype="float32",
            ),
        ]
    )
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    classifier.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return classifier


def simclr_probe(
    encoder: keras.Model,
    train: Split,
    test: Split,
    num_classes: int,
    epochs: int = 90,
    batch_size: int = 512,
    learning_rate: float = 0.1,
    l2: float = 0.0,
    flip: bool | None = None,
    seed: int = 0,
) -> ProbeResult:
    """SimCLR's linear protocol: a linear layer on the frozen encoder's h of new random
    views (`simclr_views`) of the training images every epoch, scored on the test images.

    As the SimCLR README's linear-evaluation command runs `run.py --train_mode=finetune`:
    a zero-initialised layer (`--zero_init_logits_layer`), SGD with Nesterov momentum 0.9
    (`--optimizer=momentum`) at `learning_rate` x batch / 256 (linear scaling), cosine
    decay without warm-up, no standardisation of h; test images whole, or a centred 87.5%
    crop above 32 px. `l2` is Keras' l2 * ||W||^2 (SimCLR's `--weight_decay=wd` is
    l2 = wd / 2, on the bias too; its CIFAR-10 command uses 0). SimCLR trains 90 epochs at
    batch 4096 on ImageNet, 100 at 512 on CIFAR-10. The encoder runs in inference mode and
    never changes, so each epoch's h are computed in one batched pass before the layer
    trains on them: the same updates as encoding every batch as it comes.
    """
    if epochs < 1:
        raise UsageError(f"epochs must be >= 1, got {epochs}")
    labels = split_labels(train)
    batch = min(batch_size, len(labels))
    steps = epochs * math.ceil(len(labels) / batch)
    keras.utils.set_random_seed(seed)
    classifier, history = None, {}
    for epoch in range(epochs):
        views = simclr_views(train, epoch, seed, flip, batch_size).prefetch(tf.data.AUTOTUNE)
        features = _predict(encoder, views, len(labels))
        if classifier is None:
            classifier = _simclr_classifier(features.shape[1], num_classes, learning_rate * batch / 256, steps, l2)
        fitted = classifier.fit(features, labels, batch_size=batch, initial_epoch=epoch, epochs=epoch + 1, verbose=0)
        for name, values in fitted.history.items():
            history.setdefault(name, []).extend(values)
    image_shape = tuple(test.dataset.element_spec[0].shape)
    test_images = test.dataset.map(lambda image, label: to_unit_range(image)).batch(batch_size)
    if not is_small(image_shape):
        test_images = test_images.map(_center_crop)
    test_features = _predict(encoder, test_images.prefetch(tf.data.AUTOTUNE), test.num_examples)
    scores = classifier.predict(test_features, batch_size=1024, verbose=0)
    test_labels = split_labels(test)
    settings = {
        "epochs": epochs,
        "batch_size": batch,
        "learning_rate": learning_rate,
        "l2": l2,
        "flip": resolve_flip(flip, image_shape[-1]),
    }
    return ProbeResult(
        top1_accuracy(scores, test_labels), len(labels), len(test_labels), scores, history, SIMCLR, settings
    )


def _logistic_loss_and_gradient(
    parameters: tf.Tensor, features: tf.Tensor, labels: tf.Tensor, weight: tf.Tensor, l2: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """`weight` x the mean softmax cross-entropy of `features` (cast to float64 here, so
    that only a chunk at a time is held in float64) + l2 * ||kernel||^2, of the kernel
    [D, K] and bias [K] flattened into `parameters`, and its gradient."""
    dim = tf.shape(features)[1]
    classes = tf.size(parameters) // (dim + 1)
    with tf.GradientTape() as tape:
        tape.watch(parameters)
        kernel = tf.reshape(parameters[: dim * classes], [dim, classes])
        logits = tf.cast(features, tf.float64) @ kernel + parameters[dim * classes :]
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        loss = weight * tf.reduce_mean(cross_entropy) + l2 * tf.reduce_sum(kernel**2)
    return loss, tape.gradient(loss, parameters)


# Traced once for float32 features (as `extract_features` gives them) and once for
# float64, each for any shape: a trace for known shapes makes Grappler warn about doubles.
_TRACED_LOSS_AND_GRADIENT = {
    dtype: tf.function(
        _logistic_loss_and_gradient,
        input_signature=[
            tf.TensorSpec([None], tf.float64),
            tf.TensorSpec([None, None], dtype),
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([], tf.float64),
            tf.TensorSpec([], tf.float64),
        ],
    )
    for dtype in (tf.float32, tf.float64)
}


def _inverse_hessian_times(gradient: np.ndarray, steps: list[np.ndarray], changes: list[np.ndarray]) -> np.ndarray:
    """L-BFGS' two-loop recursion (Nocedal & Wright, Algorithm 7.4): the inverse-Hessian
    estimate from the last parameter steps s and gradient changes y, times `gradient`."""
    rhos = [1.0 / (change @ step) for step, change in zip(steps, changes)]
    q, alphas = gradient.copy(), []
    for step, change, rho in reversed(list(zip(steps, changes, rhos))):
        alphas.append(rho * (step @ q))
        q -= alphas[-1] * change
    if steps:
        q *= (steps[-1] @ changes[-1]) / (changes[-1] @ changes[-1])
    else:  # a first step of length at most 1
        q /= max(1.0, float(np.linalg.norm(gradient)))
    for step, change, rho, alpha in zip(steps, changes, rhos, reversed(alphas)):
        q += (alpha - rho * (change @ q)) * step
    return q


def _lbfgs(loss_and_gradient, parameters: np.ndarray, max_iterations: int, tolerance: float, memory: int = 10):
    """Minimises a smooth convex function from `parameters` by L-BFGS with a backtracking
    (Armijo) line search; stops when no gradient entry exceeds `tolerance`, after
    `max_iterations`, or when no step lowers the loss any more (float64 precision)."""
    loss, gradient = loss_and_gradient(parameters)
    steps, changes = [], []
    for _ in range(max_iterations):
        if np.max(np.abs(gradient)) <= tolerance:
            break
        direction = -_inverse_hessian_times(gradient, steps, changes)
        slope, length = gradient @ direction, 1.0
        while True:
            candidate = parameters + length * direction
            new_loss, new_gradient = loss_and_gradient(candidate)
            if new_loss <= loss + 1e-4 * length * slope:
                break
            length /= 2
            if length < 1e-10:
                return parameters
        step, change = candidate - parameters, new_gradient - gradient
        # Only pairs of positive curvature keep the estimate positive definite.
        if step @ change > 1e-10 * np.linalg.norm(step) * np.linalg.norm(change):
            steps, changes = [*steps[-memory + 1 :], step], [*changes[-memory + 1 :], change]
        parameters, loss, gradient = candidate, new_loss, new_gradient
    return parameters


def fit_logistic_regression(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    l2: float,
    max_iterations: int = 1000,
    tolerance: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel [D, K] and bias [K] minimising the mean softmax cross-entropy plus
    l2 * ||kernel||^2 (the bias is not penalised), by full-batch L-BFGS from zero in float64.
    Features of up to FLOAT64_CHUNK entries are held in float64, cast once; larger float32
    features (as `extract_features` gives them) stay as they are, and each loss evaluation
    casts one chunk at a time, so that neither a float64 nor a second float32 copy is held.

    scikit-learn's `LogisticRegression` minimises C * sum(cross-entropy) + ||W||^2 / 2,
    which has the same minimum at C = 1 / (2 * N * l2) for N examples. The fit stops when
    no gradient entry exceeds `tolerance` or after `max_iterations`: a weak penalty on
    unstandardised features converges slowly, and 1e-5 already fixes every prediction.
    """
    if l2 < 0:
        raise UsageError(f"l2 must be >= 0, got {l2}")
    # Narrower floats widen to float32 exactly. Copying a chunk into TensorFlow at every
    # evaluation costs far less than its matrix products.
    in_float64 = features.dtype == np.float64 or features.size <= FLOAT64_CHUNK
    dtype = tf.float64 if in_float64 else tf.float32
    rows = max(1, FLOAT64_CHUNK // features.shape[1])
    chunks = []
    for start in range(0, len(features), rows):
        chunk = features[start : start + rows]
        chunk = tf.constant(chunk, tf.float64) if in_float64 else chunk.astype(np.float32, copy=False)
        chunks.append((chunk, tf.constant(labels[start : start + rows], tf.int64)))
    # Each chunk's mean weighs by its share of the rows; the penalty is added once.
    weights = [tf.constant(len(chunk_labels) / len(features), tf.float64) for _, chunk_labels in chunks]
    penalties = [tf.constant(l2 if index == 0 else 0.0, tf.float64) for index in range(len(chunks))]

    def loss_and_gradient(parameters: np.ndarray) -> tuple[float, np.ndarray]:
        parameters, loss, gradient = tf.constant(parameters), 0.0, 0.0
        for (chunk_features, chunk_labels), weight, penalty in zip(chunks, weights, penalties):
            chunk_loss, chunk_gradient = _TRACED_LOSS_AND_GRADIENT[dtype](
                parameters, chunk_features, chunk_labels, weight, penalty
            )
            loss, gradient = loss + float(chunk_loss), gradient + chunk_gradient.numpy()
        return loss, gradient

    dim = features.shape[1]
    parameters = _lbfgs(loss_and_gradient, np.zeros(dim * num_classes + num_classes), max_iterations, tolerance)
    return parameters[: dim * num_classes].reshape(dim, num_classes), parameters[dim * num_classes :]


def lbfgs_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    l2_grid: tuple[float, ...] = L2_GRID,
    validation_fraction: float = 0.1,
    seed: int = 0,
    max_iterations: int = 1000,
) -> ProbeResult:
    """The "lbfgs" protocol of SimCLR's transfer experiments (after Kornblith et al. 2019):
    top-1 accuracy of an L2-regularised multinomial logistic regression on frozen,
    un-augmented, unstandardised features, fitted by L-BFGS (`fit_logistic_regression`).

    l2 is chosen from `l2_grid` by the accuracy on a validation split carved from the
    training features (`validation_indices`; a tie goes to the stronger penalty), then the
    regression is refitted on all of them. The test split is read for the final score only.
    """
    if not len(l2_grid):
        raise UsageError("l2_grid is empty; give at least one L2 penalty to choose from")
    fit, held_out = validation_indices(train_labels, validation_fraction, seed)
    grid = sorted(map(float, l2_grid), reverse=True)
    accuracies = []
    for l2 in grid:
        kernel, bias = fit_logistic_regression(train_features[fit], train_labels[fit], num_classes, l2, max_iterations)
        accuracies.append(top1_accuracy(train_features[held_out] @ kernel + bias, train_labels[held_out]))
    chosen = grid[int(np.argmax(accuracies))]
    kernel, bias = fit_logistic_regression(train_features, train_labels, num_classes, chosen, max_iterations)
    scores = (test_features @ kernel + bias).astype(np.float32)
    settings = {
        "l2": chosen,
        "l2_grid": grid,
        "validation_accuracy": accuracies,
        "validation_fraction": validation_fraction,
    }
    return ProbeResult(
        top1_accuracy(scores, test_labels), len(train_features), len(test_features), scores, {}, LBFGS, settings
    )


# The linear protocols by name. Each trains a linear classifier on the frozen encoder's h
# and scores it on the test split; every results table says which one it ran.
LINEAR_PROTOCOLS = {STANDARDISED: linear_probe, SIMCLR: simclr_probe, LBFGS: lbfgs_probe}


def protocol_settings(protocol: str) -> list[str]:
    """The settings (keyword arguments) that `protocol` takes; UsageError for an unknown name."""
    if protocol not in LINEAR_PROTOCOLS:
        raise UsageError(f"unknown linear protocol {protocol!r}; choose one of {', '.join(LINEAR_PROTOCOLS)}")
    parameters = list(inspect.signature(LINEAR_PROTOCOLS[protocol]).parameters)
    return parameters[parameters.index("num_classes") + 1 :]


def probe_encoder(
    encoder: keras.Model, train: Split, test: Split, num_classes: int, protocol: str = STANDARDISED, **protocol_args
) -> ProbeResult:
    """Linear-evaluation accuracy of `encoder` trained on `train` and measured on `test`
    by `protocol` (a name in `LINEAR_PROTOCOLS`), with that protocol's settings."""
    unknown = sorted(set(protocol_args) - set(protocol_settings(protocol)))
    if unknown:
        raise UsageError(
            f"the {protocol} protocol takes no {', '.join(unknown)}; "
            f"its settings are {', '.join(protocol_settings(protocol))}"
        )
    if protocol == SIMCLR:
        return simclr_probe(encoder, train, test, num_classes, **protocol_args)
    features = (*extract_features(encoder, train), *extract_features(encoder, test))
    return LINEAR_PROTOCOLS[protocol](*features, num_classes, **protocol_args)
