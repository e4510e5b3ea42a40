"""Evaluation pieces against independent computations: sklearn's metrics, a brute-force
NumPy kNN, and exact stratified subsets."""

import json

import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics

from contrastive_tf.data import Split, load_data
from contrastive_tf.errors import UsageError
from contrastive_tf.evaluation import (
    labelled_data,
    labelled_subset,
    split_labels,
    stratified_indices,
    stratified_sample,
    validation_indices,
    validation_split,
)
from contrastive_tf.knn import KnnMonitor, knn_scores
from contrastive_tf.plots import pca_2d
from contrastive_tf.reports import classification_report, report_classification
from contrastive_tf.run_folder import load_pretrained


@pytest.mark.parametrize("num_classes", [3, 12])
def test_classification_report_matches_sklearn(num_classes):
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, 500)
    scores = rng.normal(size=(500, num_classes)) + 2.0 * np.eye(num_classes)[labels] * rng.random((500, 1))
    report = classification_report(labels, scores, [f"c{i}" for i in range(num_classes)])
    predictions = scores.argmax(1)
    assert report["top1_accuracy"] == pytest.approx(metrics.accuracy_score(labels, predictions))
    if num_classes > 5:
        expected = metrics.top_k_accuracy_score(labels, scores, k=5, labels=range(num_classes))
        assert report["top5_accuracy"] == pytest.approx(expected)
    else:
        assert "top5_accuracy" not in report
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        labels, predictions, labels=range(num_classes), zero_division=0
    )
    rows = report["per_class"]
    assert [row["class"] for row in rows] == [f"c{i}" for i in range(num_classes)]
    np.testing.assert_allclose([row["precision"] for row in rows], precision)
    np.testing.assert_allclose([row["recall"] for row in rows], recall)
    np.testing.assert_allclose([row["f1"] for row in rows], f1)
    assert [row["support"] for row in rows] == support.tolist()
    expected_confusion = metrics.confusion_matrix(labels, predictions, labels=range(num_classes))
    np.testing.assert_array_equal(report["confusion_matrix"], expected_confusion)


def test_a_class_never_predicted_scores_zero_not_nan():
    report = classification_report(np.array([0, 1, 2]), np.eye(3)[[0, 0, 2]])
    assert report["per_class"][1] == {"class": "1", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_knn_on_a_toy_set_with_a_known_answer():
    # Class 0 points east, class 1 north; the test points lean clearly one way.
    train = np.array([[1, 0], [1, 0.1], [1, -0.1], [0, 1], [0.1, 1]], np.float32)
    labels = np.array([0, 0, 0, 1, 1])
    test = np.array([[5, 1], [1, 4], [-1, 9]], np.float32)  # the scale does not matter
    scores = knn_scores(train, labels, test, num_classes=2, k=3, temperature=0.1)
    assert scores.argmax(1).tolist() == [0, 1, 1]
    # With k=1 the vote is exp(s/tau) of the single most similar neighbour.
    one = knn_scores(train, labels, test[:1], num_classes=2, k=1, temperature=0.5)
    best = (train / np.linalg.norm(train, axis=1, keepdims=True)) @ (test[0] / np.linalg.norm(test[0]))
    np.testing.assert_allclose(one, [[np.exp(best.max() / 0.5), 0.0]], rtol=1e-5)


def test_knn_equals_brute_force_numpy_across_batches():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(300, 16)), rng.normal(size=(45, 16))
    labels = rng.integers(0, 4, 300)
    scores = knn_scores(train, labels, test, num_classes=4, k=20, temperature=0.1, batch_size=7)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(test) @ unit(train).T
    expected = np.zeros((45, 4))
    for row in range(45):
        for neighbour in np.argsort(-similarity[row])[:20]:
            expected[row, labels[neighbour]] += np.exp(similarity[row, neighbour] / 0.1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4)


def test_stratified_subsets_are_exact_and_seeded():
    labels = np.repeat(np.arange(10), 5000)
    chosen = stratified_indices(labels, 0.01, seed=3)
    assert np.bincount(labels[chosen]).tolist() == [50] * 10  # 1% of CIFAR-10
    np.testing.assert_array_equal(chosen, stratified_indices(labels, 0.01, seed=3))
    assert not np.array_equal(chosen, stratified_indices(labels, 0.01, seed=4))
    assert np.bincount(labels[stratified_indices(labels, 1e-6)]).tolist() == [1] * 10  # never an empty class
    unlabelled = np.array([-1, -1, 0, 0, 1, 1])
    assert set(unlabelled[stratified_indices(unlabelled, 1.0)]) == {0, 1}
    with pytest.raises(UsageError, match="label_fraction must be in"):
        stratified_indices(labels, 0.0)


def test_knn_monitor_samples_every_class_of_a_split_stored_class_by_class():
    # An image folder lists its classes one after another: the first 2,000 training
    # images of CIFAR-10 are all aeroplanes, which made the monitor report 100%.
    labels = np.repeat(np.arange(10), 300)
    images = np.zeros((len(labels), 4, 4, 1), np.uint8)
    split = Split(tf.data.Dataset.from_tensor_slices((images, labels)), len(labels))
    monitor = KnnMonitor(split, split, 10, bank_size=1000, query_size=500)
    assert np.bincount(split_labels(monitor.bank)).tolist() == [100] * 10
    assert np.bincount(split_labels(monitor.queries)).tolist() == [50] * 10


def _indexed_split(labels: np.ndarray) -> Split:
    """A split whose image i holds i in its first two pixels, so a subset says which examples it kept."""
    images = np.zeros((len(labels), 4, 4, 1), np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = np.divmod(np.arange(len(labels)), 256)
    return Split(tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64))), len(labels))


def _indices(split: Split) -> list[int]:
    return [int(image[0, 0, 0]) * 256 + int(image[0, 1, 0]) for image, _ in split.dataset.as_numpy_iterator()]


def test_stratified_sample_keeps_every_class_share_in_order_and_a_small_split_whole():
    labels = np.repeat(np.arange(3), [500, 300, 200])  # stored class by class, as an image folder is
    split = _indexed_split(labels)
    chosen = _indices(stratified_sample(split, 100, seed=3))
    assert np.bincount(labels[chosen]).tolist() == [50, 30, 20] and chosen == sorted(chosen)
    assert _indices(stratified_sample(split, 100, seed=3)) == chosen
    assert _indices(stratified_sample(split, 100, seed=4)) != chosen
    assert stratified_sample(split, 1000, seed=3) is split  # the same examples in the same order


def test_validation_splits_are_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(5), 40)
    train, held_out = validation_indices(labels, 0.1, seed=3)
    assert np.bincount(labels[held_out]).tolist() == [4] * 5
    assert not set(train) & set(held_out) and sorted([*train, *held_out]) == list(range(200))
    np.testing.assert_array_equal(held_out, validation_indices(labels, 0.1, seed=3)[1])
    assert not np.array_equal(held_out, validation_indices(labels, 0.1, seed=4)[1])

    train_split, validation = validation_split(_indexed_split(labels), 0.1, seed=3)
    assert _indices(train_split) == train.tolist() and _indices(validation) == held_out.tolist()
    assert validation.num_examples == 20 and train_split.num_examples == 180

    with pytest.raises(UsageError, match=r"validation_fraction must be in \(0, 1\)"):
        validation_indices(labels, 1.0)
    with pytest.raises(UsageError, match="class 2 has a single labelled example"):
        validation_indices(np.array([0, 0, 1, 1, 2]), 0.1)


def test_knn_monitor_can_query_a_validation_split_carved_from_train():
    labels = np.repeat(np.arange(4), 50)
    monitor = KnnMonitor.from_training_split(_indexed_split(labels), 4, seed=1, bank_size=1000, query_size=1000)
    train, held_out = validation_indices(labels, 0.1, seed=1)
    assert _indices(monitor.bank) == train.tolist() and _indices(monitor.queries) == held_out.tolist()
    assert np.bincount(split_labels(monitor.queries)).tolist() == [5] * 4


def test_labelled_subset_keeps_the_chosen_examples(mnist_subset):
    data = load_data(str(mnist_subset))
    subset = labelled_subset(data, 0.1, seed=1)
    labels = split_labels(subset.train)
    all_labels = split_labels(data.train)
    assert subset.train.num_examples == len(labels) == len(stratified_indices(all_labels, 0.1, seed=1))
    np.testing.assert_array_equal(labels, all_labels[stratified_indices(all_labels, 0.1, seed=1)])
    assert labelled_subset(data, 1.0) is data


def test_evaluation_data_must_fit_the_encoder(mnist_subset, tmp_path):
    with pytest.raises(UsageError, match="1-channel images but the encoder takes 3"):
        labelled_data(str(mnist_subset), None, (28, 28, 3))
    assert labelled_data(str(mnist_subset), None, (16, 16, 1)).image_shape == (16, 16, 1)  # resized
    path = tmp_path / "no_test.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4))
    with pytest.raises(UsageError, match="no labelled test split"):
        labelled_data(str(path), None, (8, 8, 1))


def test_pca_projects_on_the_top_eigenvectors_of_the_covariance():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 5)) * np.array([10.0, 5.0, 1.0, 0.5, 0.1]) + 3.0
    points = pca_2d(features)
    values, vectors = np.linalg.eigh(np.cov(features, rowvar=False))
    expected = (features - features.mean(0)) @ vectors[:, np.argsort(values)[::-1][:2]]
    np.testing.assert_allclose(np.abs(points), np.abs(expected), rtol=1e-6, atol=1e-9)  # up to each axis' sign


def test_results_and_figures_are_written_and_well_formed(tmp_path):
    rng = np.random.default_rng(0)
    labels, features = rng.integers(0, 10, 200), rng.normal(size=(200, 8))
    history = {"loss": [2.0, 1.5], "accuracy": [0.3, 0.5]}
    report_classification(tmp_path, {"dataset": "toy"}, labels, rng.normal(size=(200, 10)), features, (), history)
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0 <= results["top1_accuracy"] <= 1 and results["dataset"] == "toy"
    assert results["command"].startswith("python") and results["versions"]["tensorflow"]
    assert len(results["confusion_matrix"]) == 10 and len(results["per_class"]) == 10
    for name in ("confusion_matrix", "embedding", "training_curves"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and results["figures"][name].endswith(f"{name}.png")


def test_evaluation_inputs_that_cannot_work_are_one_line_usage_errors(mnist_subset, tmp_path):
    with pytest.raises(UsageError, match="encoder path /no/such/run does not exist"):
        load_pretrained("/no/such/run")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UsageError, match="holds no encoder"):
        load_pretrained(tmp_path / "notes.txt")
    data = load_data(str(mnist_subset))
    with pytest.raises(UsageError, match=r"label_fraction must be in \(0, 1\]"):
        labelled_subset(data, 0.0)
