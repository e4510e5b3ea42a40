"""LARS, the warmup-cosine schedule and learning-rate scaling, against hand computations."""

import math

import keras
import numpy as np
import pytest

from contrastive_tf.errors import UsageError
from contrastive_tf.optimizers import LARS, build_optimizer, scale_learning_rate, warmup_cosine


def test_lars_scales_matrix_steps_by_the_trust_ratio_and_leaves_vectors_plain():
    matrix, vector = keras.Variable(np.full((2, 2), 2.0, np.float32)), keras.Variable(np.ones(3, np.float32))
    optimizer = LARS(learning_rate=0.5, momentum=0.9, weight_decay=0.1, trust_coefficient=0.01)
    matrix_gradient, vector_gradient = np.full((2, 2), 1.0, np.float32), np.full(3, 0.5, np.float32)
    w, v = matrix.numpy().copy(), vector.numpy().copy()
    velocity_w, velocity_v = np.zeros_like(w), np.zeros_like(v)
    for _ in range(2):
        optimizer.apply([matrix_gradient, vector_gradient], [matrix, vector])
        g = matrix_gradient + 0.1 * w  # weight decay joins the gradient of weight matrices
        trust = 0.01 * np.linalg.norm(w) / np.linalg.norm(g)
        velocity_w = 0.9 * velocity_w + g
        w = w - 0.5 * trust * velocity_w
        velocity_v = 0.9 * velocity_v + vector_gradient  # no decay, no trust ratio on 1-D
        v = v - 0.5 * velocity_v
    np.testing.assert_allclose(matrix.numpy(), w, rtol=1e-6)
    np.testing.assert_allclose(vector.numpy(), v, rtol=1e-6)


def test_lars_config_round_trips():
    optimizer = LARS(0.2, momentum=0.8, weight_decay=1e-4, trust_coefficient=0.002)
    restored = LARS.from_config(optimizer.get_config())
    assert (restored.momentum, restored.lars_weight_decay, restored.trust_coefficient) == (0.8, 1e-4, 0.002)


def test_warmup_then_cosine_decay():
    schedule = warmup_cosine(peak=1.0, total_steps=110, warmup_steps=10)
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(60)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 50 / 100)))
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "scaling, expected", [("linear", 0.3 * 512 / 256), ("sqrt", 0.3 * math.sqrt(512)), ("none", 0.3)]
)
def test_learning_rate_scaling(scaling, expected):
    assert scale_learning_rate(0.3, 512, scaling) == pytest.approx(expected)


def test_unknown_optimizer_and_scaling_are_usage_errors():
    with pytest.raises(UsageError, match="unknown optimizer 'rmsprop'"):
        build_optimizer("rmsprop", 0.1)
    with pytest.raises(UsageError, match="unknown lr_scaling 'cubic'"):
        scale_learning_rate(0.1, 256, "cubic")
