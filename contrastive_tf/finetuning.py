"""Fine-tuning a pretrained encoder on a few labels (SimCLR's semi-supervised protocol),
and the supervised-from-scratch baseline on the same labels."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from contrastive_tf.augmentation import RandomHorizontalFlip, RandomResizedCrop, resolve_flip
from contrastive_tf.data import Split, to_unit_range
from contrastive_tf.evaluation import split_labels, top1_accuracy
from contrastive_tf.heads import ProjectionHead

# SimCLR fine-tunes on crops of 8-100% of the area (google-research/simclr tf2/data_util.py,
# preprocess_for_train with crop and flip, no colour: what run.py's fine-tuning reads).
FINE_TUNING_CROP_SCALE = (0.08, 1.0)


def light_augmentation(
    channels: int,
    seed: int = 0,
    flip: bool | None = None,
    crop_scale: tuple[float, float] = FINE_TUNING_CROP_SCALE,
) -> keras.Sequential:
    """SimCLR's fine-tuning augmentation: a random resized crop of `crop_scale` of the area
    (aspect 3/4-4/3), plus a horizontal flip. `flip=None` (auto) flips colour images only,
    by the rule pretraining's `SimCLRAugment` follows (`resolve_flip`: a flipped digit is
    another symbol)."""
    layers = [RandomResizedCrop(scale=crop_scale, seed=seed)]
    if resolve_flip(flip, channels):
        layers.append(RandomHorizontalFlip(seed=seed + 1))
    return keras.Sequential(layers, name="light_augmentation")


@keras.saving.register_keras_serializable(package="contrastive_tf")
class Classifier(keras.Model):
    """images -> [augment when training] -> encoder -> [first `head_layers` of the
    projection head] -> linear layer -> class logits.

    SimCLRv2 fine-tunes from the first projection-head layer (`head_layers=1` with its
    head); SimCLR v1 from the representation h (`head_layers=0`).
    """

    def __init__(
        self,
        encoder: keras.Model,
        num_classes: int,
        augmenter: keras.layers.Layer | None = None,
        projection_head: ProjectionHead | None = None,
        head_layers: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if head_layers and projection_head is None:
            raise ValueError("`head_layers` > 0 needs the `projection_head` it comes from.")
        self.encoder, self.augmenter, self.projection_head = encoder, augmenter, projection_head
        self.num_classes, self.head_layers = num_classes, head_layers
        self.logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")

    def build(self, input_shape):
        shape = self.encoder.compute_output_shape(input_shape)
        if self.head_layers:
            if not self.projection_head.built:  # a fresh head, for the from-scratch baseline
                self.projection_head.build(shape)
            # The layers above `head_layers` take no part: frozen, so the optimiser neither
            # warns that they have no gradients nor keeps slots for them.
            for layer in self.projection_head.layers_after(self.head_layers):
                layer.trainable = False
            shape = (*shape[:-1], self.projection_head.dense_layers[self.head_layers - 1].units)
        self.logits.build(shape)

    def call(self, images, training=False):
        x = to_unit_range(images)
        if training and self.augmenter is not None:
            x = self.augmenter(x, training=True)
        h = self.encoder(x, training=training)
        if self.head_layers:
            h = self.projection_head.layers_upto(self.head_layers, h, training=training)
        return self.logits(h)

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            **super().get_config(),
            "encoder": serialize(self.encoder),
            "num_classes": self.num_classes,
            "augmenter": serialize(self.augmenter) if self.augmenter is not None else None,
            "projection_head": serialize(self.projection_head) if self.projection_head is not None else None,
            "head_layers": self.head_layers,
        }

    @classmethod
    def from_config(cls, config):
        for key in ("encoder", "augmenter", "projection_head"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@dataclasses.dataclass
class FineTuneResult:
    model: Classifier
    top1_accuracy: float
    test_scores: np.ndarray
    history: dict[str, list[float]]


def labelled_batches(split: Split, batch_size: int, seed: int, shuffle: bool) -> tf.data.Dataset:
    """(image, label) batches of `split`, in memory, shuffled each epoch when asked."""
    dataset = split.dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(split.num_examples, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fine_tune(
    model: Classifier,
    train: Split,
    test: Split,
    epochs: int = 30,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    verbose: int | str = 0,
) -> FineTuneResult:
    """Trains every weight of `model` on `train` (Adam, cosine decay, cross-entropy),
    then scores `test`. The test split is never used for any choice during training."""
    steps = epochs * max(1, -(-train.num_examples // batch_size))
    model.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    batches = labelled_batches(train, batch_size, seed, shuffle=True)
    fitted = model.fit(batches, epochs=epochs, verbose=verbose, shuffle=False)  # shuffled by the pipeline
    scores, labels = predict_scores(model, test)
    return FineTuneResult(model, top1_accuracy(scores, labels), scores, fitted.history)


def predict_scores(model: keras.Model, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s class scores for every image of `split` (inference mode), and the labels."""
    images = labelled_batches(split, 512, seed=0, shuffle=False).map(lambda images, labels: images)
    return np.asarray(model.predict(images, verbose=0), np.float32), split_labels(split)
