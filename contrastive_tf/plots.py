"""Pictures a person would rather look at than numbers: views, training curves, the
confusion matrix, a 2-D map of the representation and image-search neighbours."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from contrastive_tf import storage
from contrastive_tf.data import to_unit_range


def _show(axis, image: np.ndarray) -> None:
    axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0)
    axis.axis("off")


def _finish(figure: Figure, path: str | os.PathLike | None) -> Figure:
    """Saves `figure` to `path` (on any filesystem `storage` reaches) and closes it, or
    returns it open for a notebook to show."""
    figure.tight_layout()
    if path is not None:
        storage.write_atomically(path, lambda staged: figure.savefig(staged, dpi=100))
        plt.close(figure)
    return figure


def plot_view_pairs(images, augmenter, path: str | os.PathLike | None = None, count: int = 8, crops=None) -> Figure:
    """A grid where each row is an original image and two augmented views of it.

    Args:
        images: uint8 [0, 255] or float [0, 1] images, [B, H, W, C].
        augmenter: a layer that makes one view per call, e.g. `SimCLRAugment`.
        path: where to save the PNG; None leaves the figure open (notebooks).
        count: how many images (rows) to show.
        crops: two views of each image cropped on the host from its original, [B, 2, H, W, C]
            (`contrastive_tf.data.sample_views`), which `augmenter` then augments uncropped.
    """
    images = to_unit_range(tf.convert_to_tensor(images[:count]))
    if crops is None:
        view_a, view_b = augmenter(images, training=True), augmenter(images, training=True)
    else:
        crops = to_unit_range(tf.convert_to_tensor(crops[:count]))
        view_a, view_b = (augmenter(crops[:, v], training=True, crop=False) for v in range(2))
    figure, axes = plt.subplots(len(images), 3, figsize=(4.5, 1.5 * len(images)), squeeze=False)
    for row, column in enumerate(zip(images.numpy(), view_a.numpy(), view_b.numpy())):
        for axis, image in zip(axes[row], column):
            _show(axis, image)
    for axis, title in zip(axes[0], ("image", "view a", "view b")):
        axis.set_title(title)
    return _finish(figure, path)


def plot_training_curves(history: dict[str, list[float]], path: str | os.PathLike | None = None) -> Figure:
    """One panel per logged metric (loss, contrastive and probe accuracy) by epoch;
    saved to `path`, or left open when it is None."""
    names = [name for name, values in history.items() if values]
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for axis, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    return _finish(figure, path)


def plot_confusion_matrix(
    confusion: np.ndarray, class_names: list[str] | tuple[str, ...] = (), path: str | os.PathLike | None = None
) -> Figure:
    """Rows are true classes, columns predictions; each row is shaded by its share, so
    rare classes show as clearly as common ones, and small matrices print the counts."""
    confusion = np.asarray(confusion)
    count = len(confusion)
    names = list(class_names)[:count] + [str(index) for index in range(len(class_names), count)]
    shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = min(3 + 0.45 * count, 16)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    ticks = np.arange(count) if count <= 40 else []
    axis.set_xticks(ticks, [names[index] for index in ticks], rotation=90)
    axis.set_yticks(ticks, [names[index] for index in ticks])
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if count <= 20:
        for row, column in np.ndindex(confusion.shape):
            colour = "white" if shares[row, column] > 0.5 else "black"
            axis.text(column, row, confusion[row, column], ha="center", va="center", fontsize=7, color=colour)
    return _finish(figure, path)


def pca_2d(features: np.ndarray) -> np.ndarray:
    """The projection of `features` [N, D] on its two principal axes, [N, 2]."""
    centred = np.asarray(features, np.float64) - np.mean(features, axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    return centred @ axes[:2].T


def plot_embedding(
    features: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | tuple[str, ...] = (),
    path: str | os.PathLike | None = None,
    max_points: int = 5000,
    seed: int = 0,
) -> Figure:
    """The features' first two principal components, one colour per class (PCA: exact,
    fast and deterministic; the notebooks show t-SNE). At most `max_points` points."""
    if len(features) > max_points:
        chosen = np.random.default_rng(seed).choice(len(features), max_points, replace=False)
        features, labels = features[chosen], labels[chosen]
    points = pca_2d(features)
    figure, axis = plt.subplots(figsize=(6.5, 5))
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for label in np.unique(labels):
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        here = labels == label
        axis.scatter(
            points[here, 0], points[here, 1], s=4, alpha=0.6, color=colours(int(label) % colours.N), label=name
        )
    if len(np.unique(labels)) <= 20:
        axis.legend(markerscale=3, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    axis.set_xlabel("principal component 1")
    axis.set_ylabel("principal component 2")
    axis.set_title("test representations (PCA)")
    return _finish(figure, path)


def _shortened(text: str, length: int = 22) -> str:
    return text if len(text) <= length else "…" + text[-(length - 1) :]


def plot_neighbours(
    queries: np.ndarray,
    neighbours: np.ndarray,
    similarities: np.ndarray,
    captions: np.ndarray | None = None,
    query_captions: list[str] | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """A row per query: the query image, then its nearest images, each titled with its
    cosine similarity (and its caption, shortened from the left to fit).

    Args:
        queries: uint8 [Q, H, W, C] (or float in [0, 1]).
        neighbours: the same kind, [Q, k, H, W, C], most similar first.
        similarities: [Q, k] cosine similarities.
        captions: [Q, k] names of the neighbours (file names, classes), or None.
        query_captions: Q names of the queries, or None.
        path: where to save the PNG; None leaves the figure open (notebooks).
    """
    queries = np.asarray(to_unit_range(tf.convert_to_tensor(queries)))
    neighbours = np.asarray(to_unit_range(tf.convert_to_tensor(neighbours)))
    count, k = similarities.shape
    figure, axes = plt.subplots(count, k + 1, figsize=(1.3 * (k + 1), 1.55 * count), squeeze=False)
    for row in range(count):
        _show(axes[row, 0], queries[row])
        name = f"\n{_shortened(query_captions[row])}" if query_captions is not None else ""
        axes[row, 0].set_title(f"query{name}", fontsize=7, fontweight="bold")
        for column in range(k):
            _show(axes[row, column + 1], neighbours[row, column])
            name = f"\n{_shortened(str(captions[row, column]))}" if captions is not None else ""
            axes[row, column + 1].set_title(f"{similarities[row, column]:.3f}{name}", fontsize=7)
    return _finish(figure, path)
