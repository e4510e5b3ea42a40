"""The model every method builds on, and SimCLR and SupCon: `keras.Model`s whose
`train_step` is the whole method."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.distribute import is_multi_worker
from contrastive_tf.losses import mean_cross_entropy, multiview_nt_xent_loss, nt_xent_logits, supcon_loss


def to_unit_range(images: tf.Tensor) -> tf.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; float images pass through unchanged."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


class ContrastiveModel(keras.Model):
    """What every method shares: the encoder f, the augmenter that makes the views, an
    online linear probe, the update step, metrics and saving. A method adds its heads
    (`heads`) and a `train_step` that reads images -> views -> encoder -> head -> loss.

    Feed `fit` batches of images (uint8 [0, 255] or float [0, 1]) or (images, labels).
    With labels and `num_classes`, an online linear probe is trained on the frozen
    representation (`stop_gradient(h)`) and its accuracy logged as `probe_accuracy`:
    a free, running estimate of representation quality.
    """

    # Constructor arguments that are layers, serialised as such by `get_config`.
    layer_args: tuple[str, ...] = ("encoder", "augmenter")
    # Whether the loss takes more than two views of an image.
    multi_view = False

    def __init__(
        self,
        encoder: keras.Model,
        augmenter: keras.layers.Layer,
        num_views: int = 2,
        num_classes: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_views < 2:
            raise ValueError(f"`num_views` must be >= 2; received num_views={num_views}.")
        if num_views > 2 and not self.multi_view:
            raise ValueError(f"{type(self).__name__} compares two views; received num_views={num_views}.")
        self.encoder, self.augmenter = encoder, augmenter
        self.num_views, self.num_classes = num_views, num_classes
        self.probe = keras.layers.Dense(num_classes, name="linear_probe") if num_classes else None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.probe_loss_tracker = keras.metrics.Mean(name="probe_loss")
        self.probe_accuracy = keras.metrics.SparseCategoricalAccuracy(name="probe_accuracy")

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
        # metrics, only the optimizer is left to build, and that needs no data.
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
        """`num_views` augmented views of a batch's images, and its labels (or None)."""
        images, labels = data if isinstance(data, tuple) else (data, None)
        images = to_unit_range(images)
        return [self.augmenter(images, training=True) for _ in range(self.num_views)], labels

    def minimize(self, tape: tf.GradientTape, loss: tf.Tensor, variables: list | None = None) -> None:
        """One optimizer step on `loss` (recorded by `tape`) plus the layers' own losses."""
        variables = self.trainable_variables if variables is None else variables
        with tape:
            total = loss + tf.add_n([0.0, *self.losses])
            # Keras sums the replicas' gradients; each replica's share makes that the mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        self.optimizer.apply(tape.gradient(scaled, variables), variables)

    def _logs(self) -> dict[str, tf.Tensor]:
        logs = {metric.name: metric.result() for metric in self.metrics}
        if is_multi_worker(tf.distribute.get_strategy()):
            # Keras averages logs across workers along axis 0, which a scalar lacks
            # (keras-team/keras#20585); the mean of [1]-vectors is the scalar mean.
            logs = {name: value[None] for name, value in logs.items()}
        return logs

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
        return config | {key: keras.saving.serialize_keras_object(getattr(self, key)) for key in self.layer_args}

    @classmethod
    def from_config(cls, config):
        for key in cls.layer_args:
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


@keras.saving.register_keras_serializable(package="contrastive_tf")
class SimCLR(ContrastiveModel):
    """SimCLR (Chen et al. 2020): augmented views of each image, encoder f, head g,
    NT-Xent on the projections, with negatives gathered across replicas. With more than
    two views, each view's positives are the other views of its image.

    Args:
        encoder: images [B, H, W, C] in [0, 1] -> representation h [B, D].
        projection_head: h -> z.
        augmenter: images -> one random view; called once per view.
        temperature: NT-Xent tau > 0.
        num_classes: classes of the online probe; None turns the probe off.
        num_views: views per image, >= 2.

    Example:
        >>> model = SimCLR(small_cnn(), ProjectionHead(), SimCLRAugment(), temperature=0.5)
        >>> model.compile(optimizer=LARS(0.3))
        >>> model.fit(images_and_labels, epochs=10)
    """

    layer_args = ("encoder", "projection_head", "augmenter")
    multi_view = True

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        temperature: float = 0.5,
        num_classes: int | None = None,
        num_views: int = 2,
        **kwargs,
    ):
        super().__init__(encoder, augmenter, num_views, num_classes, **kwargs)
        if temperature <= 0:
            raise ValueError(f"`temperature` must be > 0; received temperature={temperature}.")
        self.projection_head, self.temperature = projection_head, temperature
        self.contrastive_accuracy = keras.metrics.SparseCategoricalAccuracy(name="contrastive_accuracy")
        self._build_now()

    def heads(self):
        return [self.projection_head]

    @property
    def metrics(self):
        return [self.loss_tracker, self.contrastive_accuracy, *super().metrics[1:]]

    def train_step(self, data):
        views, labels = self.views(data)
        with tf.GradientTape() as tape:
            h = [self.encoder(view, training=True) for view in views]
            z = [self.projection_head(x, training=True) for x in h]
            loss, (logits, targets) = self.contrastive_loss(z, labels)
            total = loss + self.probe_loss(h[0], labels)
        self.minimize(tape, total)
        self.loss_tracker.update_state(loss)
        self.contrastive_accuracy.update_state(targets, logits)
        return self._logs()

    def contrastive_loss(self, z: list[tf.Tensor], labels: tf.Tensor | None):
        """The loss on the views' projections, and the first two views' NT-Xent logits
        and targets, whose top-1 is `contrastive_accuracy`."""
        logits, targets = nt_xent_logits(z[0], z[1], self.temperature)
        if len(z) == 2:
            return mean_cross_entropy(targets, logits), (logits, targets)
        return multiview_nt_xent_loss(z, self.temperature), (logits, targets)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="contrastive_tf")
class SupCon(SimCLR):
    """Supervised contrastive learning (Khosla et al. 2020): SimCLR whose positives are all
    views of the same class, so it needs (images, labels) batches. Same arguments as
    `SimCLR`; the paper uses temperature 0.1."""

    def contrastive_loss(self, z, labels):
        if labels is None:
            raise ValueError("SupCon needs (images, labels) batches; these batches have no labels.")
        labels = tf.tile(tf.reshape(labels, [-1]), [len(z)])
        loss = supcon_loss(tf.concat(z, axis=0), labels, self.temperature)
        return loss, nt_xent_logits(z[0], z[1], self.temperature)
