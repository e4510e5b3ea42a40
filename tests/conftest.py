"""Test set-up: two logical CPU devices (for MirroredStrategy) and the shared data."""

import pathlib
import subprocess
import sys

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
def pretrained_run(mnist_subset, tmp_path_factory) -> tuple[pathlib.Path, subprocess.CompletedProcess]:
    """One short real pretraining run on the MNIST subset (4 epochs, about a minute), shared
    by the tests of pretraining and of the evaluations that start from its outputs."""
    model_dir = tmp_path_factory.mktemp("pretrained")
    flags = [f"--dataset={mnist_subset}", "--epochs=4", "--batch_size=200", f"--model_dir={model_dir}"]
    result = subprocess.run(
        [sys.executable, "-m", "experiments.pretrain", *flags], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir, result


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs, shared: several strategies in one
    process can clash on collective keys."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
