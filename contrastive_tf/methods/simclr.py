"""SimCLR (Chen et al. 2020) and SupCon (Khosla et al. 2020): views of each image, one
encoder and projection head, and NT-Xent (or its supervised form) over the global batch.

Both follow their reference code in running the encoder once over all views of the batch
(google-research/simclr `tf2/model.py`, `Model.__call__`; HobbitLong/SupContrast
`main_supcon.py`, `train`): batch norm normalises over all of them, and its moving
averages move once per step."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.heads import ProjectionHead
from contrastive_tf.losses import (
    check_temperature,
    mean_cross_entropy,
    multiview_nt_xent_loss,
    nt_xent_logits,
    supcon_loss,
)
from contrastive_tf.methods.base import ContrastiveModel


@keras.saving.register_keras_serializable(package="contrastive_tf")
class SimCLR(ContrastiveModel):
    """SimCLR (Chen et al. 2020): augmented views of each image, encoder f, head g,
    NT-Xent on the projections, with negatives gathered across replicas. With more than
    two views, each view's positives are the other views of its image.

    The loss is the reference's (`tf2/objective.py`, `add_contrastive_loss`):
    loss_a + loss_b, each a mean over the N images of one view, which is twice the mean
    over all 2N anchors that `nt_xent_loss` returns (V times for V views). So the paper's
    learning rate gives the reference's update for every variable, including the 1-D ones
    whose step LARS does not rescale. The online probe sees the representations of all
    views, each with its image's label, as the reference's supervised head does.

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
        check_temperature(temperature)
        self.projection_head, self.temperature = projection_head, temperature
        self.contrastive_accuracy = keras.metrics.SparseCategoricalAccuracy(name="contrastive_accuracy")
        self._build_now()

    @classmethod
    def create(
        cls,
        encoder: keras.Model,
        augmenter: keras.layers.Layer,
        *,
        num_views: int = 2,
        num_classes: int | None = None,
        total_steps: int = 1000,
        temperature: float = 0.2,
        projection_layers: int = 2,
        projection_dim: int = 128,
        projection_hidden_dim: int | None = None,
    ) -> SimCLR:
        """SimCLR with its MLP head. Temperature 0.2 suits short runs on small batches;
        the paper's CIFAR-10 recipe uses 0.5 and ImageNet's 0.1."""
        head = ProjectionHead(projection_layers, projection_dim, projection_hidden_dim)
        return cls(encoder, head, augmenter, temperature, num_classes=num_classes, num_views=num_views)

    def heads(self):
        return [self.projection_head]

    @property
    def metrics(self):
        return [self.loss_tracker, self.contrastive_accuracy, *super().metrics[1:]]

    def train_step(self, data):
        views, labels = self.views(data)
        with tf.GradientTape() as tape:
            h = self.encoder(tf.concat(views, axis=0), training=True)
            z = tf.split(self.projection_head(h, training=True), len(views))
            loss, (logits, targets) = self.contrastive_loss(z, labels)
            total = loss + self.probe_loss(h, None if labels is None else tf.tile(labels, [len(views)]))
        self.minimize(tape, total)
        self.loss_tracker.update_state(loss)
        self.contrastive_accuracy.update_state(targets, logits)
        return self._logs()

    def contrastive_loss(self, z: list[tf.Tensor], labels: tf.Tensor | None):
        """The loss on the views' projections, and the first two views' NT-Xent logits
        and targets, whose top-1 is `contrastive_accuracy`."""
        logits, targets = nt_xent_logits(z[0], z[1], self.temperature)
        mean = mean_cross_entropy(targets, logits) if len(z) == 2 else multiview_nt_xent_loss(z, self.temperature)
        # The reference sums the views' means (see the class docstring).
        return len(z) * mean, (logits, targets)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="contrastive_tf")
class SupCon(SimCLR):
    """Supervised contrastive learning (Khosla et al. 2020): SimCLR whose positives are all
    views of the same class, so it needs (images, labels) batches. Same arguments as
    `SimCLR`; the paper uses temperature 0.1."""

    needs_labels = True

    @classmethod
    def create(
        cls,
        encoder: keras.Model,
        augmenter: keras.layers.Layer,
        *,
        num_views: int = 2,
        num_classes: int | None = None,
        total_steps: int = 1000,
        temperature: float = 0.1,
        projection_layers: int = 2,
        projection_dim: int = 128,
        projection_hidden_dim: int | None = None,
    ) -> SupCon:
        """SupCon with SimCLR's head, at the paper's temperature."""
        settings = dict(
            temperature=temperature,
            projection_layers=projection_layers,
            projection_dim=projection_dim,
            projection_hidden_dim=projection_hidden_dim,
        )
        return super().create(encoder, augmenter, num_views=num_views, num_classes=num_classes, **settings)

    def contrastive_loss(self, z, labels):
        if labels is None:
            raise ValueError("SupCon needs (images, labels) batches; these batches have no labels.")
        labels = tf.tile(tf.reshape(labels, [-1]), [len(z)])
        loss = supcon_loss(tf.concat(z, axis=0), labels, self.temperature)
        return loss, nt_xent_logits(z[0], z[1], self.temperature)
