"""The pretraining stages under MirroredStrategy on two logical CPU devices."""

import dataclasses

import tensorflow as tf

from contrastive_tf.config import PretrainConfig
from contrastive_tf.pretraining import build_model, prepare


def test_build_model_makes_every_variable_in_the_strategys_scope(mnist_subset, tmp_path, mirrored):
    """The augmenter's random-stream counters too: a plain variable would be shared by the
    replicas, which would then draw other views than the same run on several workers."""
    config = PretrainConfig(dataset=str(mnist_subset), width=0.25, batch_size=500, model_dir=str(tmp_path))
    run = dataclasses.replace(prepare(config), strategy=mirrored)
    model = build_model(run)
    seed_states = [v for v in model.augmenter.variables if "rng_state" in v.path]
    assert seed_states
    for variable in [*model.variables, *seed_states]:
        assert isinstance(variable.value, tf.distribute.DistributedValues), variable.path
