"""LARS and the coupled SGD against NumPy transcriptions of SimCLR's, solo-learn's and
torch's update rules, the exclusions from weight decay and the trust ratio, the
warmup-cosine schedule and learning-rate scaling."""

import math

import keras
import numpy as np
import pytest

from contrastive_tf.errors import UsageError
from contrastive_tf.optimizers import (
    LARS,
    CoupledSGD,
    build_optimizer,
    exclude_vectors_from_weight_decay,
    scale_learning_rate,
    warmup_cosine,
)
from references import numpy_lars_step, numpy_solo_lars_step, numpy_torch_sgd_step

SHAPES = {"matrix": (8, 4), "conv_kernel": (3, 3, 2, 4), "bias": (4,)}


def _gradients(steps: int, seed: int = 0) -> list[list[np.ndarray]]:
    """Per step, one gradient per variable of SHAPES, its norm varying by e^N(0, 1)."""
    rng = np.random.default_rng(seed)
    return [
        [(rng.normal(size=shape) * np.exp(rng.normal())).astype(np.float32) for shape in SHAPES.values()]
        for _ in range(steps)
    ]


def _run(optimizer: keras.optimizers.Optimizer, steps: int, seed: int = 0) -> tuple[list, list, list]:
    """Initial weights, the optimizer's weights after `steps` and the per-step gradients."""
    rng = np.random.default_rng(seed + 1)
    initial = [rng.normal(size=shape).astype(np.float32) for shape in SHAPES.values()]
    variables = [keras.Variable(w) for w in initial]
    gradients = _gradients(steps, seed)
    for step_gradients in gradients:
        optimizer.apply(step_gradients, variables)
    return initial, [v.numpy() for v in variables], gradients


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_lars_matches_simclr_reference_under_a_schedule(nesterov):
    schedule = warmup_cosine(peak=2.0, total_steps=20, warmup_steps=5)
    settings = {"momentum": 0.9, "weight_decay": 0.01, "nesterov": nesterov}
    optimizer = LARS(schedule, trust_coefficient=0.01, **settings)
    initial, weights, gradients = _run(optimizer, steps=20)
    for i, (w, name) in enumerate(zip(initial, SHAPES)):
        adapted = name != "bias"  # SimCLR excludes biases and batch norm by name; LARS by rank
        v = np.zeros_like(w, np.float64)
        for step, step_gradients in enumerate(gradients):
            w, v = numpy_lars_step(
                w, step_gradients[i], v, float(schedule(step)), eta=0.01, decay=adapted, adapt=adapted, **settings
            )
        np.testing.assert_allclose(weights[i], w, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("clip_lr", [False, True], ids=["unclipped", "clipped"])
@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_lars_matches_solo_learn_reference_under_a_schedule(clip_lr, nesterov):
    # eta 0.2 against a peak of 0.5: the clip binds on some steps and not on others.
    schedule = warmup_cosine(peak=0.5, total_steps=20, warmup_steps=5)
    settings = {"momentum": 0.9, "weight_decay": 0.01, "nesterov": nesterov, "clip_lr": clip_lr}
    optimizer = LARS(schedule, trust_coefficient=0.2, variant="solo_learn", **settings)
    initial, weights, gradients = _run(optimizer, steps=20)
    for i, (w, name) in enumerate(zip(initial, SHAPES)):
        buffer = np.zeros_like(w, np.float64)
        for step, step_gradients in enumerate(gradients):
            w, buffer = numpy_solo_lars_step(
                w, step_gradients[i], buffer, float(schedule(step)), eta=0.2, exclude_bias_n_norm=True, **settings
            )
        np.testing.assert_allclose(weights[i], w, rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_matrix_whose_gradient_is_zero_is_decayed_by_simclrs_lars_only():
    # SimCLR adds wd * w before taking norms; solo-learn adds it only when both norms are > 0.
    w, zero, settings = np.ones((2, 2)), np.zeros((2, 2)), {"momentum": 0.9, "weight_decay": 0.5, "nesterov": False}
    simclr, _ = numpy_lars_step(w, zero, zero, 0.1, eta=0.001, decay=True, adapt=True, **settings)
    solo_learn, _ = numpy_solo_lars_step(
        w, zero, zero, 0.1, eta=0.001, clip_lr=False, exclude_bias_n_norm=True, **settings
    )
    np.testing.assert_array_equal(solo_learn, w)
    for variant, expected in [("simclr", simclr), ("solo_learn", solo_learn)]:
        matrix = keras.Variable(w.astype(np.float32))
        LARS(0.1, weight_decay=0.5, variant=variant).apply([zero.astype(np.float32)], [matrix])
        np.testing.assert_allclose(matrix.numpy(), expected, rtol=1e-6, err_msg=variant)
    assert not np.allclose(simclr, w)


@pytest.mark.parametrize("variant", ["simclr", "solo_learn"])
def test_lars_gives_variables_excluded_from_weight_decay_plain_momentum_steps(variant):
    probe = keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=0), name="linear_probe")
    probe.build((None, 5))
    optimizer = LARS(0.5, momentum=0.9, weight_decay=0.1, trust_coefficient=0.001, clip_lr=True, variant=variant)
    exclude_vectors_from_weight_decay(optimizer, probe.trainable_variables, plain=probe.trainable_variables)
    kernel = probe.kernel.numpy().astype(np.float64)
    gradient, velocity = np.full((5, 3), 0.25, np.float32), np.zeros((5, 3))
    for _ in range(3):
        optimizer.apply([gradient, np.zeros(3, np.float32)], probe.trainable_variables)
        # No trust ratio, no weight decay; at a constant rate both variants' momentum take these steps.
        velocity = 0.9 * velocity + 0.5 * gradient
        kernel = kernel - velocity
    np.testing.assert_allclose(probe.kernel.numpy(), kernel, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_sgd_adds_weight_decay_to_the_gradient_before_momentum_as_torch_does(momentum):
    schedule = warmup_cosine(peak=0.5, total_steps=10, warmup_steps=3)
    initial, weights, gradients = _run(build_optimizer("sgd", schedule, 0.05, momentum), steps=10)
    for i, (w, name) in enumerate(zip(initial, SHAPES)):
        buffer = np.zeros_like(w, np.float64)
        for step, step_gradients in enumerate(gradients):
            w, buffer = numpy_torch_sgd_step(
                w, step_gradients[i], buffer, float(schedule(step)), momentum=momentum, weight_decay=0.05
            )
        np.testing.assert_allclose(weights[i], w, rtol=1e-5, atol=1e-6, err_msg=name)


def test_sgd_keeps_weight_decay_off_excluded_vectors():
    matrix, bias = keras.Variable(np.ones((2, 2), np.float32)), keras.Variable(np.ones(2, np.float32))
    optimizer = build_optimizer("sgd", 0.1, weight_decay=0.5)
    exclude_vectors_from_weight_decay(optimizer, [matrix, bias])
    optimizer.apply([np.zeros((2, 2), np.float32), np.zeros(2, np.float32)], [matrix, bias])
    np.testing.assert_allclose(bias.numpy(), np.ones(2))  # no gradient and no decay: unmoved
    np.testing.assert_allclose(matrix.numpy(), np.full((2, 2), 1 - 0.1 * 0.5))


@pytest.mark.parametrize(
    "optimizer",
    [
        LARS(warmup_cosine(1.0, 100, 10), momentum=0.8, weight_decay=1e-4, trust_coefficient=0.002, nesterov=True),
        LARS(0.3, weight_decay=1e-4, trust_coefficient=0.02, clip_lr=True, variant="solo_learn"),
        CoupledSGD(0.05, momentum=0.85, weight_decay=5e-4),
    ],
    ids=["lars", "solo_learn_lars", "sgd"],
)
def test_config_round_trips(optimizer):
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is type(optimizer)
    assert restored.get_config() == optimizer.get_config()
    assert restored.weight_decay is None  # Keras' decoupled decay stays off


def test_a_lars_saved_before_clip_lr_and_variant_loads_as_simclrs():
    config = LARS(0.1, trust_coefficient=0.002).get_config()
    del config["clip_lr"], config["variant"]
    restored = LARS.from_config(config)
    assert (restored.trust_coefficient, restored.clip_lr, restored.variant) == (0.002, False, "simclr")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LARS(momentum=1.0), r"`momentum` must be in \[0, 1\); received momentum=1.0"),
        (lambda: LARS(trust_coefficient=0.0), "`trust_coefficient` must be > 0; received trust_coefficient=0.0"),
        (lambda: LARS(variant="torch"), r"`variant` must be one of \('simclr', 'solo_learn'\); received variant="),
        (lambda: CoupledSGD(weight_decay=-1e-4), "`weight_decay` must be >= 0; received weight_decay=-0.0001"),
    ],
)
def test_bad_arguments_are_named_in_the_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_warmup_then_cosine_decay():
    schedule = warmup_cosine(peak=1.0, total_steps=110, warmup_steps=10)
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(60)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 50 / 100)))
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-6)


def test_warmup_starts_where_solo_learn_starts_it():
    # solo-learn, solo/utils/lr_scheduler.py: warmup_start_lr, then linear to the peak.
    schedule = warmup_cosine(peak=1.0, total_steps=110, warmup_steps=10, start=3e-5)
    assert float(schedule(0)) == pytest.approx(3e-5)
    assert float(schedule(5)) == pytest.approx(3e-5 + 0.5 * (1.0 - 3e-5))
    assert float(schedule(60)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 50 / 100)))


def test_an_epoch_wise_schedule_is_torchs_cosine_annealing_stepped_per_epoch():
    # torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs), stepped once an
    # epoch (lightly's cifar10_benchmark.py): lr_e = base (1 + cos(pi e / epochs)) / 2.
    epochs, steps_per_epoch, base = 4, 3, 0.12
    schedule = warmup_cosine(peak=base, total_steps=epochs * steps_per_epoch, warmup_steps=0, steps_per_epoch=3)
    expected = [base * (1 + math.cos(math.pi * (step // steps_per_epoch) / epochs)) / 2 for step in range(12)]
    assert [float(schedule(step)) for step in range(12)] == pytest.approx(expected, rel=1e-5)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert float(restored(7)) == pytest.approx(expected[7])


def test_sgd_decays_vectors_too_when_asked_as_torch_over_all_parameters():
    matrix, bias = keras.Variable(np.ones((2, 2), np.float32)), keras.Variable(np.ones(2, np.float32))
    probe = keras.Variable(np.ones(2, np.float32))
    optimizer = build_optimizer("sgd", 0.1, weight_decay=0.5)
    exclude_vectors_from_weight_decay(optimizer, [matrix, bias], plain=[probe], decay_vectors=True)
    optimizer.apply([np.zeros((2, 2), np.float32)] + [np.zeros(2, np.float32)] * 2, [matrix, bias, probe])
    np.testing.assert_allclose(bias.numpy(), np.full(2, 1 - 0.1 * 0.5))
    np.testing.assert_allclose(probe.numpy(), np.ones(2))  # the probe still takes plain steps


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


def test_lars_settings_are_refused_by_the_other_optimizers():
    with pytest.raises(UsageError, match="sgd does not use clip_lr; those are LARS' settings"):
        build_optimizer("sgd", 0.1, clip_lr=True)
