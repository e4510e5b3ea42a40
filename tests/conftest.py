"""Test set-up: two logical CPU devices (for MirroredStrategy) and the shared data."""

import pathlib

import numpy as np
import pytest

from contrastive_tf.distribute import use_logical_cpus

# Must happen before TensorFlow touches a device, so it runs when pytest loads this file.
use_logical_cpus(2)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"


@pytest.fixture(scope="session")
def mnist_subset(tmp_path_factory) -> pathlib.Path:
    """A real-MNIST .npz (first 4,000 train and 1,000 test digits) from ../shared/data."""
    if not SHARED_MNIST.exists():
        pytest.skip(f"{SHARED_MNIST} is not here; the shared data sets live beside the repository")
    path = tmp_path_factory.mktemp("mnist") / "mnist_subset.npz"
    with np.load(SHARED_MNIST, allow_pickle=False) as mnist:
        np.savez(
            path,
            x_train=mnist["x_train"][:4000],
            y_train=mnist["y_train"][:4000],
            x_test=mnist["x_test"][:1000],
            y_test=mnist["y_test"][:1000],
        )
    return path


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs, shared: several strategies in one
    process can clash on collective keys."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
