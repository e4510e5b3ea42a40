"""Fine-tuning: from the middle of a projection head (SimCLRv2's protocol), behind a
rotation with a batch of unknown size, and SimCLR's fine-tuning crops."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf.augmentation import RandomResizedCrop, RandomRotation
from contrastive_tf.data import Split
from contrastive_tf.encoders import small_cnn
from contrastive_tf.finetuning import Classifier, fine_tune, light_augmentation
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


def test_fine_tuning_crops_as_simclr_from_8_to_100_percent_of_the_area():
    # google-research/simclr tf2/data_util.py: fine-tuning reads preprocess_for_train with
    # crop_and_resize, area_range (0.08, 1.0), aspect 3/4-4/3.
    crop = light_augmentation(3).layers[0]
    assert isinstance(crop, RandomResizedCrop)
    assert (crop.scale, crop.ratio) == ((0.08, 1.0), (3 / 4, 4 / 3))
    # A 64x64 image whose pixel value is its column: a view's first row spans the crop's width.
    columns = tf.tile(tf.reshape(tf.linspace(0.0, 1.0, 64), [1, 1, 64, 1]), [4000, 64, 1, 3])
    out = light_augmentation(3, seed=0, flip=False)(columns, training=True).numpy()
    widths = out[:, 0, -1, 0] - out[:, 0, 0, 0]
    # sqrt(0.08 * 3/4) = 0.245 is the narrowest crop 8% allows; 50% would allow 0.61.
    assert 0.2 < np.quantile(widths, 0.001) < 0.3


def test_fine_tuning_crops_as_asked():
    crop = light_augmentation(1, crop_scale=(0.5, 1.0)).layers[0]
    assert crop.scale == (0.5, 1.0)
