"""The SimCLR model: a `keras.Model` whose `train_step` is the whole method."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.distribute import is_multi_worker
from contrastive_tf.losses import mean_cross_entropy, nt_xent_logits


def to_unit_range(images: tf.Tensor) -> tf.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; float images pass through unchanged."""
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


@keras.saving.register_keras_serializable(package="contrastive_tf")
class SimCLR(keras.Model):
    """SimCLR (Chen et al. 2020): two augmented views per image, encoder f, head g,
    NT-Xent on the projections, with negatives gathered across replicas.

    Feed `fit` batches of images (uint8 [0, 255] or float [0, 1]) or (images, labels).
    With labels and `num_classes`, an online linear probe is trained on the frozen
    representation (`stop_gradient(h)`) and its accuracy logged as `probe_accuracy`:
    a free, running estimate of representation quality.

    Args:
        encoder: images [B, H, W, C] in [0, 1] -> representation h [B, D].
        projection_head: h -> z.
        augmenter: images -> one random view; called twice per step.
        temperature: NT-Xent tau > 0.
        num_classes: classes of the online probe; None turns the probe off.

    Example:
        >>> model = SimCLR(small_cnn(), ProjectionHead(), SimCLRAugment(), temperature=0.5)
        >>> model.compile(optimizer=LARS(0.3))
        >>> model.fit(images_and_labels, epochs=10)
    """

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        temperature: float = 0.5,
        num_classes: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"`temperature` must be > 0; received temperature={temperature}.")
        self.encoder, self.projection_head, self.augmenter = encoder, projection_head, augmenter
        self.temperature, self.num_classes = temperature, num_classes
        self.probe = keras.layers.Dense(num_classes, name="linear_probe") if num_classes else None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.contrastive_accuracy = keras.metrics.SparseCategoricalAccuracy(name="contrastive_accuracy")
        self.probe_loss_tracker = keras.metrics.Mean(name="probe_loss")
        self.probe_accuracy = keras.metrics.SparseCategoricalAccuracy(name="probe_accuracy")
        # An encoder with a known input shape builds the whole model now, so that a saved
        # .keras file records the shapes and restores the optimizer state too.
        if getattr(encoder, "inputs", None):
            self.build((None, *encoder.input_shape[1:]))

    def build(self, input_shape):
        h_shape = self.encoder.compute_output_shape(input_shape)
        parts = [(self.augmenter, input_shape), (self.encoder, input_shape), (self.projection_head, h_shape)]
        for part, shape in parts + ([(self.probe, h_shape)] if self.probe is not None else []):
            # Parts restored from a .keras file arrive built.
            if not part.built:
                part.build(shape)

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
        tracked = [self.loss_tracker, self.contrastive_accuracy]
        return tracked + ([self.probe_loss_tracker, self.probe_accuracy] if self.probe is not None else [])

    def train_step(self, data):
        images, labels = data if isinstance(data, tuple) else (data, None)
        images = to_unit_range(images)
        view_a, view_b = self.augmenter(images, training=True), self.augmenter(images, training=True)
        with tf.GradientTape() as tape:
            h_a, h_b = self.encoder(view_a, training=True), self.encoder(view_b, training=True)
            z_a, z_b = self.projection_head(h_a, training=True), self.projection_head(h_b, training=True)
            logits, targets = nt_xent_logits(z_a, z_b, self.temperature)
            loss = mean_cross_entropy(targets, logits)
            total = loss + self._probe_loss(h_a, labels) + tf.add_n([0.0, *self.losses])
            # Keras sums the replicas' gradients; each replica's share makes that the mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(total / replicas)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        self.contrastive_accuracy.update_state(targets, logits)
        return self._logs()

    def _logs(self) -> dict[str, tf.Tensor]:
        logs = {metric.name: metric.result() for metric in self.metrics}
        if is_multi_worker(tf.distribute.get_strategy()):
            # Keras averages logs across workers along axis 0, which a scalar lacks
            # (keras-team/keras#20585); the mean of [1]-vectors is the scalar mean.
            logs = {name: value[None] for name, value in logs.items()}
        return logs

    def _probe_loss(self, h: tf.Tensor, labels: tf.Tensor | None) -> tf.Tensor:
        """Cross-entropy of the online linear probe on frozen h (0 without labels)."""
        if self.probe is None or labels is None:
            return tf.constant(0.0)
        logits = tf.cast(self.probe(tf.stop_gradient(h)), tf.float32)
        probe_loss = mean_cross_entropy(labels, logits)
        self.probe_loss_tracker.update_state(probe_loss)
        self.probe_accuracy.update_state(labels, logits)
        return probe_loss

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "projection_head": keras.saving.serialize_keras_object(self.projection_head),
            "augmenter": keras.saving.serialize_keras_object(self.augmenter),
            "temperature": self.temperature,
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_config(cls, config):
        for key in ("encoder", "projection_head", "augmenter"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
