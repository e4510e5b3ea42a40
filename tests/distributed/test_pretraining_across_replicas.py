"""The pretraining stages under MirroredStrategy on two logical CPU devices."""

import dataclasses

import numpy as np
import tensorflow as tf

from contrastive_tf.config import PretrainConfig
from contrastive_tf.evaluation import extract_features, split_subset
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


def test_the_knn_monitor_reads_a_mirrored_encoder_as_a_plain_copy_of_it(mnist_subset, tmp_path, mirrored):
    """The monitor extracts features from the training model's encoder, whose weights are
    mirrored: they must be those of a plain encoder holding the same weights."""
    config = PretrainConfig(dataset=str(mnist_subset), width=0.25, batch_size=500, model_dir=str(tmp_path))
    run = dataclasses.replace(prepare(config), strategy=mirrored)
    with mirrored.scope():
        trained = run.new_encoder()
    plain = run.new_encoder()
    plain.set_weights(trained.get_weights())
    split = split_subset(run.data.test, np.arange(300))
    (features, labels), (expected, expected_labels) = (
        extract_features(e, split, batch_size=128) for e in (trained, plain)
    )
    assert features.shape == (300, trained.output_shape[-1])
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, expected_labels)
