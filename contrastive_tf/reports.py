"""What an evaluation reports: classification metrics from class scores, and the
`results.json` every evaluation writes, with what is needed to reproduce it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import sys

import numpy as np

from contrastive_tf import storage
from contrastive_tf.evaluation import top1_accuracy
from contrastive_tf.plots import plot_confusion_matrix, plot_embedding, plot_training_curves
from contrastive_tf.run_folder import CONFUSION_FIGURE, CURVES_FIGURE, EMBEDDING_FIGURE, RESULTS_FILE

_PACKAGES = ("contrastive_tf", "tensorflow", "keras", "tensorflow-datasets", "numpy")


def classification_report(labels: np.ndarray, scores: np.ndarray, class_names: list[str] | None = None) -> dict:
    """Top-1 (and top-5 with more than 5 classes) accuracy, per-class precision, recall
    and F1, and the confusion matrix (rows: true class, columns: predicted).

    Args:
        labels: true classes [N].
        scores: any per-class scores [N, C] (logits, probabilities, kNN votes).
        class_names: C names; class indices when None or too short.
    """
    labels = np.asarray(labels, np.int64)
    num_classes = scores.shape[1]
    predictions = np.argmax(scores, axis=1)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    correct = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(0), confusion.sum(1)
    # A class never predicted (or never present) scores 0, as is usual.
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(correct), where=precision + recall > 0)
    names = list(class_names or [])
    names += [str(index) for index in range(len(names), num_classes)]
    report = {"top1_accuracy": top1_accuracy(scores, labels)}
    if num_classes > 5:
        top5 = np.argpartition(-scores, 5, axis=1)[:, :5]
        report["top5_accuracy"] = float(np.mean(np.any(top5 == labels[:, None], axis=1)))
    report["per_class"] = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    ]
    report["confusion_matrix"] = confusion.tolist()
    return report


def provenance() -> dict:
    """The command line and the versions that produced a result."""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = ["python", "-m", main.name] if main is not None and main.name else ["python", sys.argv[0]]
    return {
        "command": shlex.join([*program, *sys.argv[1:]]),
        "python": platform.python_version(),
        "versions": versions,
    }


def write_results(output_dir: str | os.PathLike, results: dict) -> storage.Location:
    """Writes `results` plus `provenance()` to `output_dir/results.json`, atomically."""
    storage.makedirs(output_dir)
    path = storage.join(output_dir, RESULTS_FILE)
    storage.write_text(path, json.dumps({**results, **provenance()}, indent=2, default=str))
    return path


def report_classification(
    output_dir: str | os.PathLike,
    inputs: dict,
    labels: np.ndarray,
    scores: np.ndarray,
    test_features: np.ndarray,
    class_names: list[str] | tuple[str, ...] = (),
    history: dict[str, list[float]] | None = None,
) -> dict:
    """Writes an evaluation's `results.json` (`inputs`, the `classification_report` and
    the figures' paths) and its figures: the confusion matrix, a 2-D map of the test
    features coloured by class, and the training curves when there is a `history`."""
    storage.makedirs(output_dir)
    report = classification_report(labels, scores, list(class_names))
    figures = {
        "confusion_matrix": storage.join(output_dir, CONFUSION_FIGURE),
        "embedding": storage.join(output_dir, EMBEDDING_FIGURE),
    }
    plot_confusion_matrix(np.array(report["confusion_matrix"]), class_names, figures["confusion_matrix"])
    plot_embedding(test_features, labels, class_names, figures["embedding"])
    if history:
        figures["training_curves"] = storage.join(output_dir, CURVES_FIGURE)
        plot_training_curves(history, figures["training_curves"])
    results = {**inputs, **report, "figures": {name: str(path) for name, path in figures.items()}}
    write_results(output_dir, results)
    return results
