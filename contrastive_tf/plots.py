"""Pictures a person would rather look at than numbers: views and training curves."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from contrastive_tf.model import to_unit_range  # noqa: E402


def _show(axis, image: np.ndarray) -> None:
    axis.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0)
    axis.axis("off")


def plot_view_pairs(images, augmenter, path: str | os.PathLike, count: int = 8) -> None:
    """Saves a grid: each row is an original image and two augmented views of it."""
    images = to_unit_range(tf.convert_to_tensor(images[:count]))
    view_a, view_b = augmenter(images, training=True), augmenter(images, training=True)
    figure, axes = plt.subplots(len(images), 3, figsize=(4.5, 1.5 * len(images)), squeeze=False)
    for row, column in enumerate(zip(images.numpy(), view_a.numpy(), view_b.numpy())):
        for axis, image in zip(axes[row], column):
            _show(axis, image)
    for axis, title in zip(axes[0], ("image", "view a", "view b")):
        axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_training_curves(history: dict[str, list[float]], path: str | os.PathLike) -> None:
    """Saves one panel per logged metric (loss, contrastive and probe accuracy) by epoch."""
    names = [name for name, values in history.items() if values]
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for axis, name in zip(axes[0], names):
        epochs = np.arange(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
