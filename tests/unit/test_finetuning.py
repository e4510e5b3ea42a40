"""Fine-tuning: from the middle of a projection head (SimCLRv2's protocol), and behind a
rotation with a batch of unknown size."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf.augmentation import RandomRotation
from contrastive_tf.data import Split
from contrastive_tf.encoders import small_cnn
from contrastive_tf.finetuning import Classifier, fine_tune
from contrastive_tf.heads import ProjectionHead


def _split(count: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, count).astype(np.int64)
    return Split(tf.data.Dataset.from_tensor_slices((images, labels)), count)


def test_fine_tuning_from_a_head_layer_trains_only_the_layers_it_uses():
    encoder = small_cnn(width=0.25)
    head = ProjectionHead(num_layers=3, output_dim=8)  # batch norm on every layer, as SimCLRv2's
    head.build(encoder.output_shape)
    unused = [*head.dense_layers[1:], *head.norm_layers[1:]]
    before = [weight.numpy() for layer in unused for weight in layer.weights]
    model = Classifier(encoder, 3, projection_head=head, head_layers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns of variables without gradients
        fine_tune(model, _split(32, 0), _split(16, 1), epochs=1, batch_size=16)
    trainable = {id(variable) for variable in model.trainable_variables}
    assert {id(variable) for variable in head.dense_layers[0].trainable_variables} <= trainable
    assert not any(id(variable) in trainable for layer in unused for variable in layer.weights)
    after = [weight.numpy() for layer in unused for weight in layer.weights]
    assert all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))


def test_a_grid_pooled_encoder_fine_tunes_behind_a_rotation():
    # The last batch of an epoch is smaller, so the batch size is unknown: the rotation must
    # still hand the grid pooling views of a known height and width.
    augmenter = keras.Sequential([RandomRotation(15, seed=0)])
    model = Classifier(small_cnn(width=0.25, pooling_grid=2), 3, augmenter)
    result = fine_tune(model, _split(40, 0), _split(16, 1), epochs=1, batch_size=16)
    assert result.test_scores.shape == (16, 3)
