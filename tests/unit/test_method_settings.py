"""Each method's settings are declared once (its `Settings` dataclass): `create`, the
model's constructor, `get_config`, `PretrainConfig` and the flags follow from them, and
models saved before they were still load."""

import dataclasses
import pathlib

import keras
import numpy as np
import pytest
from absl import flags

from contrastive_tf.config import PretrainConfig
from contrastive_tf.errors import UsageError
from contrastive_tf.methods import METHODS, contrastive_model
from experiments import pretrain
from tests.builders import config_from_argv, method_model, random_images

LEGACY = pathlib.Path(__file__).parents[1] / "data" / "keras_0.1"


def _other_value(field: dataclasses.Field) -> object:
    """A valid value of the setting other than its default."""
    default, choices = field.default, field.metadata["choices"]
    if choices:
        return next(choice for choice in choices if choice != default)
    if isinstance(default, bool):
        return not default
    if default is None or isinstance(default, int):
        return 7 if default != 7 else 8
    return default / 2


@pytest.mark.parametrize("method", METHODS)
def test_every_setting_of_every_method_is_a_flag_that_reaches_the_method(method):
    pretrain_flags = flags.FlagValues()
    pretrain.define_flags(pretrain_flags)
    for field in dataclasses.fields(METHODS[method].Settings):
        assert field.name in pretrain_flags, f"{method}'s setting {field.name} has no flag"
        value = _other_value(field)
        flag_value = str(value).lower() if isinstance(value, bool) else value
        config = config_from_argv(f"--method={method}", f"--{field.name}={flag_value}")
        assert config.method_settings() == {field.name: value}


@pytest.mark.parametrize("method", METHODS)
def test_the_model_takes_the_declared_defaults_and_saves_them(method):
    model = method_model(method)
    settings = METHODS[method].Settings.of(**{n: getattr(model, n) for n in METHODS[method].Settings.model_names()})
    config = model.get_config()
    for name in METHODS[method].Settings.model_names():
        assert config[name] == getattr(model, name) == getattr(settings, name)
    restored = type(model).from_config(config)
    assert all(getattr(restored, name) == config[name] for name in METHODS[method].Settings.model_names())


def test_the_constructor_defaults_are_the_declared_ones():
    """`SimCLR.__init__` once defaulted temperature to 0.5 where `create` chose 0.2."""
    encoder = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()])
    model = METHODS["simclr"](encoder, keras.layers.Dense(4), keras.layers.Identity())
    assert model.temperature == METHODS["simclr"].settings()["temperature"] == 0.2


def test_an_unknown_setting_and_a_bad_value_are_refused_in_one_line():
    encoder = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()])
    with pytest.raises(UsageError, match="simsiam has no setting temperature; its settings are: projection_layers"):
        contrastive_model("simsiam", encoder, keras.layers.Identity(), temperature=0.1)
    with pytest.raises(UsageError, match="target_momentum must be in \\[0, 1\\], got 1.5"):
        contrastive_model("byol", encoder, keras.layers.Identity(), target_momentum=1.5)
    with pytest.raises(UsageError, match="temperature must be > 0, got 0"):
        METHODS["moco"](encoder, keras.layers.Dense(4), keras.layers.Identity(), temperature=0)


def test_a_shared_setting_is_one_flag_whose_help_gives_each_methods_default():
    help_text = {field.name: field.metadata["help"] for field in dataclasses.fields(PretrainConfig)}["temperature"]
    assert "simclr 0.2, moco 0.2, supcon 0.1, nnclr 0.1" in help_text


@pytest.mark.parametrize("method", sorted(path.stem for path in LEGACY.glob("*.keras")))
def test_models_saved_before_the_settings_were_declared_once_still_load(method):
    """tests/data/keras_0.1 holds files saved by 0.1, where MoCo's key momentum was saved as
    `momentum` and BYOL's as `base_momentum`."""
    model = keras.saving.load_model(LEGACY / f"{method}.keras")
    # Not bit-equal: oneDNN picks its kernels by the CPU's instruction set (the file's features were
    # computed with AVX-512; on an AVX2-only EPYC they differ by up to 7e-7), where other weights
    # would differ by tenths.
    features = model(random_images(16)[:4]).numpy()
    np.testing.assert_allclose(features, np.load(LEGACY / f"{method}_h.npy"), rtol=1e-5, atol=1e-6)
    if method in ("moco", "byol"):
        assert model.target_momentum == 0.9
