"""The model every method builds on: the encoder, the views, the online probe, the update
step, metrics and saving, and how a method takes its own settings."""

from __future__ import annotations

from typing import ClassVar

import keras
import tensorflow as tf

from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.data import to_unit_range
from contrastive_tf.distribute import minimize, step_logs
from contrastive_tf.losses import mean_cross_entropy
from contrastive_tf.methods.settings import MethodSettings


class ContrastiveModel(keras.Model):
    """What every method shares: the encoder f, the augmenter that makes the views, an
    online linear probe, the update step, metrics and saving. A method adds its heads
    (`heads`) and a `train_step` that reads images -> views -> encoder -> head -> loss.

    Feed `fit` batches of images (uint8 [0, 255] or float [0, 1]) or (images, labels).
    With labels and `num_classes`, an online linear probe is trained on the frozen
    representation (`stop_gradient(h)`) and its accuracy logged as `probe_accuracy`:
    a free, running estimate of representation quality.

    A method declares its own settings once, as the fields of its `Settings`; its model
    takes the non-structural ones as keyword arguments (with the declared defaults), holds
    them as attributes and saves them. `total_steps`, the length of training, is for
    schedules such as BYOL's momentum.
    """

    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    # Names an older version saved a setting under, and the setting's name now.
    renamed_settings: ClassVar[dict[str, str]] = {}

    # Constructor arguments that are layers, serialised as such by `get_config`; a method
    # whose second view may be drawn differently adds "second_augmenter".
    layer_args: tuple[str, ...] = ("encoder", "augmenter")
    # Whether the loss takes more than two views of an image.
    multi_view = False
    # Whether the loss learns from labels, so that training needs (images, labels) batches.
    needs_labels = False

    def __init__(
        self,
        encoder: keras.Model,
        augmenter: keras.layers.Layer,
        num_views: int = 2,
        num_classes: int | None = None,
        second_augmenter: keras.layers.Layer | None = None,
        total_steps: int = 1000,
        **kwargs,
    ):
        own = {name: kwargs.pop(name) for name in self.Settings.model_names() if name in kwargs}
        super().__init__(**kwargs)
        for name, value in self.Settings.of(**own).model_arguments().items():
            setattr(self, name, value)
        if num_views < 2:
            raise ValueError(f"`num_views` must be >= 2; received num_views={num_views}.")
        if num_views > 2 and not self.multi_view:
            raise ValueError(f"{type(self).__name__} compares two views; received num_views={num_views}.")
        if total_steps < 1:
            raise ValueError(f"`total_steps` must be >= 1; received total_steps={total_steps}.")
        self.total_steps = total_steps
        self.encoder, self.augmenter, self.second_augmenter = encoder, augmenter, second_augmenter
        self.num_views, self.num_classes = num_views, num_classes
        self.probe = keras.layers.Dense(num_classes, name="linear_probe") if num_classes else None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.probe_loss_tracker = keras.metrics.Mean(name="probe_loss")
        self.probe_accuracy = keras.metrics.SparseCategoricalAccuracy(name="probe_accuracy")

    @classmethod
    def create(
        cls,
        encoder: keras.Model,
        augmenter: keras.layers.Layer,
        *,
        num_views: int = 2,
        num_classes: int | None = None,
        total_steps: int = 1000,
        batch_size: int | None = None,
        **settings,
    ) -> ContrastiveModel:
        """The method as its paper builds it around `encoder`, from `settings` (the fields of
        its `Settings`; its defaults for those left out, some of which depend on the global
        `batch_size`: see `MethodSettings.for_batch`)."""
        common = {"num_views": num_views, "num_classes": num_classes, "total_steps": total_steps}
        return cls.from_settings(encoder, augmenter, cls.Settings.of(**settings).for_batch(batch_size), **common)

    @classmethod
    def from_settings(
        cls, encoder: keras.Model, augmenter: keras.layers.Layer, settings: MethodSettings, **common
    ) -> ContrastiveModel:
        """The method's heads and views made from `settings` around `encoder`; `common` are
        the constructor arguments every method takes (num_views, num_classes, total_steps)."""
        raise NotImplementedError(f"{cls.__name__} does not say how it is built")

    @classmethod
    def settings(cls) -> dict[str, object]:
        """The method's own settings and their defaults."""
        return cls.Settings.defaults()

    @classmethod
    def check(cls, batch_size: int, **settings) -> MethodSettings:
        """The method's settings (`settings` over its defaults) for batches of `batch_size`
        images; UsageError naming the first it does not have or cannot train with."""
        return cls.Settings.of(**settings).for_batch(batch_size)

    def _build_now(self) -> None:
        """Builds the whole model when the encoder knows its input shape, so that a saved
        .keras file records the shapes and restores the optimizer state too. Subclasses
        call it last in `__init__`, once their parts exist."""
        if getattr(self.encoder, "inputs", None):
            self.build((None, *self.encoder.input_shape[1:]))

    def heads(self) -> list[keras.layers.Layer]:
        """The layers after the encoder, in order: each takes the previous one's output."""
        return []

    def build(self, input_shape):
        shape = self.encoder.compute_output_shape(input_shape)
        parts = [(self.augmenter, input_shape), (self.encoder, input_shape)]
        if self.probe is not None:
            parts.append((self.probe, shape))
        for head in self.heads():
            parts.append((head, shape))
            shape = head.compute_output_shape(shape)
        for part, part_shape in parts:
            # Parts restored from a .keras file arrive built.
            if not part.built:
                part.build(part_shape)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras takes a first batch from the iterator (which training then never sees)
        # and reduces it across replicas, which fails under MultiWorkerMirroredStrategy
        # (keras-team/keras#20585). Once built, and compiled without a loss or
        # metrics, only the optimizer is left to build, and that needs no data. Keras has
        # no public hook for this: the override and the attributes it reads are private.
        needs_data = self._compile_loss is not None or self._compile_metrics is not None
        if self._distribute_strategy is None or needs_data or not all(layer.built for layer in self._flatten_layers()):
            return super()._maybe_symbolic_build(iterator, data_batch)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=())

    def call(self, images, training=False):
        """The representation h of `images`; what downstream tasks and the export use."""
        return self.encoder(to_unit_range(images), training=training)

    @property
    def metrics(self):
        return [self.loss_tracker] + ([self.probe_loss_tracker, self.probe_accuracy] if self.probe is not None else [])

    def views(self, data) -> tuple[list[tf.Tensor], tf.Tensor | None]:
        """`num_views` augmented views of a batch's images, and its labels (or None).

        Images [B, H, W, C] are cropped here; views cropped on the host from the original
        images ([B, V, H, W, C], see `contrastive_tf.host_crops`) get the rest of the
        augmentation."""
        images, labels = data if isinstance(data, tuple) else (data, None)
        images = to_unit_range(images)
        augmenters = self.view_augmenters()
        if images.shape.rank == 4:
            return [augment(images, training=True) for augment in augmenters], labels
        if images.shape[1] != self.num_views:
            raise ValueError(f"the batch holds {images.shape[1]} views of each image; the model takes {self.num_views}")
        return [augment(images[:, v], training=True, crop=False) for v, augment in enumerate(augmenters)], labels

    def view_augmenters(self) -> list[keras.layers.Layer]:
        """The augmenter of each view: `augmenter`, except for the second view where a
        `second_augmenter` draws it differently (see `asymmetric_augmenters`)."""
        augmenters = [self.augmenter] * self.num_views
        if self.second_augmenter is not None:
            augmenters[1] = self.second_augmenter
        return augmenters

    def minimize(self, tape: tf.GradientTape, loss: tf.Tensor, variables: list | None = None) -> None:
        """One optimizer step on `loss` (recorded by `tape`) plus the layers' own losses."""
        with tape:
            total = loss + tf.add_n([0.0, *self.losses])
        minimize(self.optimizer, tape, total, self.trainable_variables if variables is None else variables)

    def _logs(self) -> dict[str, tf.Tensor]:
        return step_logs(self.metrics)

    def probe_loss(self, h: tf.Tensor, labels: tf.Tensor | None) -> tf.Tensor:
        """Cross-entropy of the online linear probe on frozen h (0 without labels)."""
        if self.probe is None or labels is None:
            return tf.constant(0.0)
        logits = tf.cast(self.probe(tf.stop_gradient(h)), tf.float32)
        probe_loss = mean_cross_entropy(labels, logits)
        self.probe_loss_tracker.update_state(probe_loss)
        self.probe_accuracy.update_state(labels, logits)
        return probe_loss

    def get_config(self):
        config = {**super().get_config(), "num_views": self.num_views, "num_classes": self.num_classes}
        config["total_steps"] = self.total_steps
        config |= {name: getattr(self, name) for name in self.Settings.model_names()}
        return config | {key: keras.saving.serialize_keras_object(getattr(self, key)) for key in self.layer_args}

    @classmethod
    def from_config(cls, config):
        for old, new in cls.renamed_settings.items():
            if old in config:
                config[new] = config.pop(old)
        for key in cls.layer_args:
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def asymmetric_augmenters(
    augmenter: keras.layers.Layer, asymmetric_views: bool = True, color_jitter: str = "torchvision"
) -> tuple[keras.layers.Layer, keras.layers.Layer | None]:
    """The augmenters of BYOL's two views, which Barlow Twins, VICReg and NNCLR draw too
    (google-deepmind/byol `byol/utils/augmentations.py`; facebookresearch/barlowtwins
    `main.py`, `Transform`; facebookresearch/vicreg `augmentations.py`, `TrainTransform`;
    solo-learn `scripts/pretrain/cifar/augmentations/asymmetric.yaml`): the first view
    always blurred and never solarized, the second blurred with probability 0.1 and
    solarized with 0.2 (blur only where `augmenter` blurs at all: not at CIFAR's size).

    Both views' colour jitter is the references' (brightness, contrast, saturation, hue
    0.4, 0.4, 0.2, 0.1 at colour strength 0.5, p = 0.8, then grayscale p = 0.2), in the
    maths `color_jitter` names (see `SimCLRAugment`): "torchvision", the `ColorJitter`
    that Barlow Twins, VICReg, solo-learn and lightly call (NNCLR has no public code; its
    CIFAR-10 recipe is solo-learn's), or "byol", BYOL's own, whose brightness is added,
    not multiplied.

    Returns (first, second): `augmenter` and None, meaning both views alike, unless
    `asymmetric_views` and `augmenter` is a `SimCLRAugment`."""
    if not asymmetric_views or not isinstance(augmenter, SimCLRAugment):
        return augmenter, None
    return (
        augmenter.variant(blur_probability=1.0, solarize_probability=0.0, color_jitter=color_jitter),
        augmenter.variant(blur_probability=0.1, solarize_probability=0.2, color_jitter=color_jitter, seed_offset=1),
    )
