"""The momentum networks, MoCo's queue and NNCLR's support set on one device and on two replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from builders import method_model, random_images
from contrastive_tf.methods.momentum import byol_momentum
from references import numpy_lightly_symmetric_moco, unit


@pytest.mark.parametrize("replicas, schedule", [(1, "cosine"), (2, "cosine"), (1, "constant")])
def test_byol_step_moves_the_target_by_the_scheduled_momentum(replicas, schedule, mirrored):
    strategy = mirrored if replicas == 2 else tf.distribute.get_strategy()
    with strategy.scope():
        model = method_model("byol", target_momentum=0.9, total_steps=4, momentum_schedule=schedule)
        model.compile(optimizer=keras.optimizers.SGD(0.5))
    target_before = [np.asarray(weight) for weight in model.target_network.weights]
    model.fit(tf.data.Dataset.from_tensors(random_images()), epochs=1, verbose=0)
    online = [*model.encoder.weights, *model.projection_head.weights]
    # After the first step: 0.9 on the constant schedule, a little higher on the cosine.
    momentum = float(byol_momentum(1, 4, base=0.9)) if schedule == "cosine" else 0.9
    moved = 0
    for before, after, source in zip(target_before, model.target_network.weights, online):
        if source.trainable:
            expected = momentum * before + (1 - momentum) * np.asarray(source)
            np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-6)
            moved += not np.allclose(after, before)
    assert moved > 10
    assert not any(weight.path.startswith("target_network") for weight in model.trainable_weights)


@pytest.mark.parametrize("replicas", [1, 2])
def test_moco_queue_holds_the_keys_of_each_global_batch_in_order(replicas, mirrored):
    strategy = mirrored if replicas == 2 else tf.distribute.get_strategy()
    batches = [random_images(16, seed) for seed in range(3)]
    with strategy.scope():
        # Momentum 1 keeps the key network at its first weights, so the keys are known.
        model = method_model("moco", target_momentum=1.0, queue_size=56, bn_groups=1)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    initial = np.asarray(model.queue.negatives())
    model.fit(tf.data.Dataset.from_tensor_slices(np.stack(batches)), epochs=1, verbose=0)
    keys = [unit(model.key_network(batch.astype(np.float32) / 255, training=True)) for batch in batches]
    queue = np.asarray(model.queue.negatives())
    np.testing.assert_allclose(queue[:48], np.concatenate(keys), atol=2e-2)
    np.testing.assert_array_equal(queue[48:], initial[48:])
    assert int(np.asarray(model.queue.position)) == 48


@pytest.mark.parametrize("replicas", [1, 2])
def test_symmetric_moco_loss_is_lightlys_on_the_global_batch(replicas, mirrored):
    strategy = mirrored if replicas == 2 else tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    images = random_images(16)
    with strategy.scope():
        model = method_model("moco", bn_groups=1, symmetric=True)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    z = np.asarray(model.projection_head(model.encoder(images.astype(np.float32) / 255, training=True), training=True))
    expected = numpy_lightly_symmetric_moco(z, z, z, z, np.asarray(model.queue.negatives()), 0, 0.5)
    loss = model.fit(tf.data.Dataset.from_tensors(images), epochs=1, verbose=0).history["loss"][0]
    assert loss == pytest.approx(expected, rel=2e-3, abs=2e-3)


@pytest.mark.parametrize("replicas", [1, 2])
def test_nnclr_support_set_holds_the_first_views_projections_of_each_global_batch(replicas, mirrored):
    strategy = mirrored if replicas == 2 else tf.distribute.get_strategy()
    batches = [random_images(16, seed) for seed in range(3)]
    with strategy.scope():
        model = method_model("nnclr", queue_size=56)
        # A learning rate of 0 keeps the networks at their first weights, so the projections are known.
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    initial = np.asarray(model.support_set.negatives())
    model.fit(tf.data.Dataset.from_tensor_slices(np.stack(batches)), epochs=1, verbose=0)
    projections = [
        unit(model.projection_head(model.encoder(batch.astype(np.float32) / 255, training=True), training=True))
        for batch in batches
    ]
    support = np.asarray(model.support_set.negatives())
    np.testing.assert_allclose(support[:48], np.concatenate(projections), atol=2e-2)
    np.testing.assert_array_equal(support[48:], initial[48:])
    assert int(np.asarray(model.support_set.position)) == 48
