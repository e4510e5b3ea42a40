"""Every recipe in configs/ runs: one epoch on a tiny labelled data set, with the data,
epochs and batch size overridden after the flagfile as a user would on the command line."""

import numpy as np
import pytest

from builders import config_from_argv
from conftest import ROOT
from contrastive_tf.pretraining import pretrain

RECIPES = sorted((ROOT / "configs").glob("*.flags"))


@pytest.fixture(scope="module")
def tiny_colour_images(tmp_path_factory):
    """48 training and 16 test colour images of 4 classes, CIFAR-sized."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(64) % 4
    np.savez(path, x_train=images[:48], y_train=labels[:48], x_test=images[48:], y_test=labels[48:])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_a_recipe_runs_one_epoch_with_data_epochs_and_batch_overridden(path, tiny_colour_images, tmp_path):
    argv = [f"--flagfile={path}", f"--dataset={tiny_colour_images}", "--epochs=1", "--batch_size=16"]
    config = config_from_argv(*argv, f"--model_dir={tmp_path}", "--verbose=0")
    result = pretrain(config)
    assert len(result.history["loss"]) == 1 and np.isfinite(result.history["loss"][0])
    assert (result.export_path / "saved_model.pb").exists()
