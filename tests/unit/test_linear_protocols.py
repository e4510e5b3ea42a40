"""The linear protocols (issue 13): SimCLR's SGD protocol against a NumPy transcription of
its first step, the lbfgs protocol against scikit-learn, and model selection that reads a
validation split carved from the training split, never the test split."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

from contrastive_tf import evaluation
from contrastive_tf.data import Split
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.evaluation import (
    L2_GRID,
    extract_features,
    fit_logistic_regression,
    lbfgs_probe,
    linear_probe,
    probe_encoder,
    simclr_probe,
    simclr_views,
    validation_indices,
)
from references import numpy_simclr_linear_first_step


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    return Split(tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, np.int64))), len(labels))


def _random_split(count: int, shape=(28, 28, 1), num_classes: int = 4, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    return _split(rng.integers(0, 256, (count, *shape), np.uint8), np.arange(count) % num_classes)


def _blobs(count: int, seed: int, dim: int = 5, num_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian classes: a problem where the L2 penalty matters."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % num_classes
    centres = np.random.default_rng(99).normal(size=(num_classes, dim))
    return (centres[labels] + 1.5 * rng.normal(size=(count, dim))).astype(np.float32), labels


def test_simclr_protocol_is_one_nesterov_step_from_zero_on_raw_features():
    # Constant images are their own random crops, so the views' features are known here;
    # the expected head follows from them without standardisation.
    encoder = build_encoder("small_cnn", (28, 28, 1), 0.25)
    values = np.linspace(10, 250, 40).astype(np.uint8)
    train = _split(np.broadcast_to(values[:, None, None, None], (40, 28, 28, 1)).copy(), np.arange(40) % 4)
    test = _random_split(16)
    result = simclr_probe(encoder, train, test, 4, epochs=1, batch_size=512, learning_rate=0.1, seed=0)

    features, labels = extract_features(encoder, train)
    # One batch of all 40 images, at SimCLR's linear scaling 0.1 x 40 / 256.
    kernel, bias = numpy_simclr_linear_first_step(features, labels, 4, learning_rate=0.1 * 40 / 256)
    test_features, _ = extract_features(encoder, test)
    np.testing.assert_allclose(result.test_scores, test_features @ kernel + bias, rtol=1e-3, atol=1e-6)
    assert result.protocol == "simclr" and result.num_train == 40 and result.num_test == 16
    assert result.settings == {"epochs": 1, "batch_size": 40, "learning_rate": 0.1, "l2": 0.0, "flip": False}


def test_simclr_views_are_new_every_epoch_and_repeat_with_the_seed():
    split = _random_split(12)

    def views(epoch, seed=0, flip=None):
        return np.concatenate(list(simclr_views(split, epoch, seed, flip, batch_size=5).as_numpy_iterator()))

    first = views(0)
    assert first.shape == (12, 28, 28, 1) and first.dtype == np.float32 and 0 <= first.min() <= first.max() <= 1
    np.testing.assert_array_equal(first, views(0))
    assert not np.allclose(first, views(1)) and not np.allclose(first, views(0, seed=1))
    np.testing.assert_array_equal(first, views(0, flip=False))  # a flipped digit is another symbol: no flips

    colour = _random_split(12, shape=(8, 8, 3))
    flipped, cropped = (
        np.concatenate(list(simclr_views(colour, 0, flip=flip).as_numpy_iterator())) for flip in (None, False)
    )
    assert not np.array_equal(flipped, cropped)


def test_simclr_protocol_encodes_new_views_each_epoch(monkeypatch):
    epochs = []

    def recording_views(split, epoch, *args):
        epochs.append(epoch)
        return simclr_views(split, epoch, *args)

    monkeypatch.setattr(evaluation, "simclr_views", recording_views)
    encoder = build_encoder("small_cnn", (28, 28, 1), 0.25)
    result = probe_encoder(encoder, _random_split(24), _random_split(8, seed=1), 4, "simclr", epochs=3)
    assert epochs == [0, 1, 2] and len(result.history["loss"]) == 3


@pytest.mark.parametrize("l2", [1e-1, 1e-3])
def test_lbfgs_fit_matches_scikit_learn(l2):
    train_features, train_labels = _blobs(300, seed=0)
    test_features, _ = _blobs(100, seed=1)
    kernel, bias = fit_logistic_regression(train_features, train_labels, 3, l2)
    # scikit-learn minimises C * sum(cross-entropy) + ||W||^2 / 2; ours, the mean + l2 ||W||^2.
    reference = LogisticRegression(C=1 / (2 * len(train_features) * l2), tol=1e-10, max_iter=10_000)
    reference.fit(train_features.astype(np.float64), train_labels)
    logits = test_features @ kernel + bias
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, reference.predict_proba(test_features), atol=1e-4)
    np.testing.assert_allclose(kernel.T, reference.coef_, rtol=1e-3, atol=1e-4)


def test_lbfgs_fit_casts_a_chunk_at_a_time_to_float64_and_reaches_the_same_minimum(monkeypatch):
    features, labels = _blobs(300, seed=0)
    whole = fit_logistic_regression(features, labels, 3, 1e-3)
    rows = []
    traced = evaluation._TRACED_LOSS_AND_GRADIENT[tf.float32]

    def recording(parameters, chunk, *args):
        rows.append(chunk.shape[0])
        return traced(parameters, chunk, *args)

    monkeypatch.setattr(evaluation, "FLOAT64_CHUNK", 32 * features.shape[1])
    monkeypatch.setitem(evaluation._TRACED_LOSS_AND_GRADIENT, tf.float32, recording)
    chunked = fit_logistic_regression(features, labels, 3, 1e-3)
    assert max(rows) == 32 and set(rows[:10]) == {32, 300 - 9 * 32}  # 10 chunks per loss evaluation
    for parameters, expected in zip(chunked, whole):
        np.testing.assert_allclose(parameters, expected, atol=1e-5)


def test_lbfgs_protocol_chooses_l2_on_a_validation_split_of_train_and_never_reads_test(monkeypatch):
    # A problem whose best validation accuracy is not at the strongest penalty.
    train_features, train_labels = _blobs(400, seed=0, dim=40)
    test_features, test_labels = _blobs(100, seed=1, dim=40)
    rows = {row.tobytes(): index for index, row in enumerate(train_features)}
    fitted = []

    def recording_fit(features, *args):
        fitted.append(sorted(rows.get(row.tobytes(), -1) for row in features))  # -1: not a training row
        return fit_logistic_regression(features, *args)

    monkeypatch.setattr(evaluation, "fit_logistic_regression", recording_fit)
    result = lbfgs_probe(train_features, train_labels, test_features, test_labels, 3, seed=0)

    training_part, held_out = validation_indices(train_labels, 0.1, seed=0)
    assert fitted[:-1] == [training_part.tolist()] * len(L2_GRID)  # every candidate, without the validation rows
    assert fitted[-1] == list(range(400))  # the chosen l2, refitted on the whole training split
    settings = result.settings
    assert result.protocol == "lbfgs" and settings["l2_grid"] == sorted(L2_GRID, reverse=True)
    best = int(np.argmax(settings["validation_accuracy"]))  # the first best: the strongest penalty of a tie
    assert settings["l2"] == settings["l2_grid"][best] and best > 0

    # A test split of NaNs and other labels changes the score, not the choice.
    blind = lbfgs_probe(train_features, train_labels, np.full_like(test_features, np.nan), test_labels[::-1], 3)
    assert blind.settings == result.settings
    assert np.isnan(blind.test_scores).all()


def test_standardised_is_the_default_protocol_and_says_so():
    features, labels = _blobs(60, seed=0)
    result = linear_probe(features, labels, features, labels, 3)
    assert result.protocol == "standardised" and result.settings == {"l2": 1e-4, "tolerance": 1e-4}


def test_standardised_protocol_is_the_penalised_regression_on_standardised_features():
    train_features, train_labels = _blobs(300, seed=0)
    test_features, test_labels = _blobs(100, seed=1)
    train_features, test_features = train_features * 50 + 7, test_features * 50 + 7  # scale and shift h
    l2 = 1e-2
    result = linear_probe(train_features, train_labels, test_features, test_labels, 3, l2=l2, tolerance=1e-8)
    mean, std = train_features.mean(0), train_features.std(0)
    # scikit-learn minimises C * sum(cross-entropy) + ||W||^2 / 2; the protocol, the mean + l2 ||W||^2.
    reference = LogisticRegression(C=1 / (2 * len(train_features) * l2), tol=1e-10, max_iter=10_000)
    reference.fit((train_features - mean) / std, train_labels)
    expected = reference.decision_function((test_features - mean) / std)
    np.testing.assert_allclose(result.test_scores, expected, rtol=1e-3, atol=1e-3)
    assert result.top1_accuracy == np.mean(expected.argmax(1) == test_labels)


def test_protocols_refuse_unknown_names_and_settings():
    encoder = build_encoder("small_cnn", (28, 28, 1), 0.25)
    split = _random_split(8)
    with pytest.raises(UsageError, match="unknown linear protocol 'sgd'; choose one of standardised, simclr, lbfgs"):
        probe_encoder(encoder, split, split, 4, "sgd")
    with pytest.raises(UsageError, match="the lbfgs protocol takes no epochs; its settings are l2_grid"):
        probe_encoder(encoder, split, split, 4, "lbfgs", epochs=3)
    with pytest.raises(UsageError, match="epochs must be >= 1"):
        simclr_probe(encoder, split, split, 4, epochs=0)
