"""Pictures a person would rather look at than numbers: views and training curves."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from contrastive_tf.model import to_unit_range


def _show(axis, image: np.ndarray) -> None:
    axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0)
    axis.axis("off")


def _finish(figure: Figure, path: str | os.PathLike | None) -> Figure:
    """Saves `figure` to `path` and closes it, or returns it open for a notebook to show."""
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return figure


def plot_view_pairs(images, augmenter, path: str | os.PathLike | None = None, count: int = 8) -> Figure:
    """A grid where each row is an original image and two augmented views of it.

    Args:
        images: uint8 [0, 255] or float [0, 1] images, [B, H, W, C].
        augmenter: a layer that makes one view per call, e.g. `SimCLRAugment`.
        path: where to save the PNG; None leaves the figure open (notebooks).
        count: how many images (rows) to show.
    """
    images = to_unit_range(tf.convert_to_tensor(images[:count]))
    view_a, view_b = augmenter(images, training=True), augmenter(images, training=True)
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
