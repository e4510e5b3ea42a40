"""Small models and inputs that several test modules build."""

import subprocess
import sys
import textwrap

import keras
import numpy as np

from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.config import PretrainConfig
from contrastive_tf.encoders import build_encoder
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.methods import METHODS, SimCLR, contrastive_model
from experiments import cli

SHAPE = (28, 28, 1)


def random_images(count=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *SHAPE), dtype=np.uint8)


def method_model(method, augmenter=None, **kwargs):
    encoder = build_encoder("small_cnn", SHAPE, width=0.25)
    settings = {
        "projection_dim": 16,
        "projection_hidden_dim": 32,
        "predictor_hidden_dim": 8,
        "queue_size": 64,
        "temperature": 0.5,
    }
    own = METHODS[method].settings() if method in METHODS else {}
    kwargs = {**{name: value for name, value in settings.items() if name in own}, **kwargs}
    return contrastive_model(method, encoder, augmenter or keras.layers.Identity(), **kwargs)


def simclr_model(augmenter=None, num_classes=None, projection_layers=2):
    return SimCLR(
        encoder=build_encoder("small_cnn", (28, 28, 1), width=0.25),
        projection_head=ProjectionHead(projection_layers, 16),
        augmenter=augmenter or SimCLRAugment(seed=0),
        temperature=0.5,
        num_classes=num_classes,
    )


def config_from_argv(*argv: str) -> PretrainConfig:
    """The config `python -m experiments.pretrain ARGV` would run, parsed in-process."""
    return cli.config_from_argv(PretrainConfig, list(argv))


# Opens an app's script: the editable install's finder would find the package from any folder.
_WITHOUT_THE_PACKAGE = """
import importlib.util, sys
sys.meta_path = [finder for finder in sys.meta_path if "contrastive_tf" not in getattr(finder, "__module__", "")]
assert importlib.util.find_spec("contrastive_tf") is None, "contrastive_tf is importable"
"""


def run_without_the_package(script: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `script` with `args` as an app on a machine without contrastive_tf would: in a
    fresh interpreter in isolated mode (no PYTHONPATH, no working folder on its path) that
    cannot import the package. Fails the test, with the app's error, if the app fails."""
    command = [sys.executable, "-I", "-c", _WITHOUT_THE_PACKAGE + textwrap.dedent(script), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result
