"""SimCLR (Chen et al. 2020) and SupCon (Khosla et al. 2020): views of each image, one
encoder and projection head, and NT-Xent (or its supervised form) over the global batch.

Both follow their reference code in running the encoder once over all views of the batch
(google-research/simclr `tf2/model.py`, `Model.__call__`; HobbitLong/SupContrast
`main_supcon.py`, `train`): batch norm normalises over all of them, and its moving
averages move once per step."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from contrastive_tf.heads import ProjectionHead
from contrastive_tf.losses import SUPCON_FORMS, mean_cross_entropy, multiview_nt_xent_loss, nt_xent_logits, supcon_loss
from contrastive_tf.methods import settings
from contrastive_tf.methods.base import ContrastiveModel
from contrastive_tf.settings import positive, setting

PROJECTION_BATCH_NORMS = ("paper", "all", "none")


@dataclasses.dataclass(frozen=True)
class SimCLRSettings(settings.MethodSettings):
    """SimCLR's settings. Temperature 0.2 suits short runs on small batches; the paper's
    CIFAR-10 recipe uses 0.5 and ImageNet's 0.1. Its MLP head is two layers (v1), as wide
    as h, to a 128-d z."""

    method = "simclr"
    temperature: float = settings.temperature(0.2)
    projection_layers: int = settings.projection_layers(2)
    projection_dim: int = settings.projection_dim(128)
    projection_hidden_dim: int | None = settings.projection_hidden_dim(None)
    projection_batch_norm: str = setting(
        "paper",
        "Batch norm in the projection head: paper, SimCLR's: none at 2 layers (v1), after every layer from 3 on, "
        "the last without a shift (v2); all, after every layer, the last with a shift (lightly's "
        "SimCLRProjectionHead); none.",
        choices=PROJECTION_BATCH_NORMS,
        structural=True,
    )


@dataclasses.dataclass(frozen=True)
class SupConSettings(SimCLRSettings):
    """SupCon's settings: SimCLR's, at the paper's temperature, with the paper's L_out loss
    unscaled (see `losses.supcon_loss`)."""

    method = "supcon"
    temperature: float = settings.temperature(0.1)
    supcon_form: str = setting(
        "out",
        "SupCon's loss: out, the paper's L_out (positives averaged outside the log, as HobbitLong/SupContrast); "
        "in, L_in as solo-learn computes it (positives summed inside the log).",
        choices=SUPCON_FORMS,
    )
    base_temperature: float | None = setting(
        None,
        "Scale SupCon's loss by temperature / base_temperature, as HobbitLong/SupContrast does (0.07 there); "
        "unset: unscaled, as the paper and solo-learn.",
        valid=positive(),
    )


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
        num_classes: classes of the online probe; None turns the probe off.
        num_views: views per image, >= 2.
        temperature: NT-Xent tau > 0 (see `SimCLRSettings`).

    Example:
        >>> model = SimCLR(small_cnn(), ProjectionHead(), SimCLRAugment(), temperature=0.5)
        >>> model.compile(optimizer=LARS(0.3))
        >>> model.fit(images_and_labels, epochs=10)
    """

    Settings = SimCLRSettings
    layer_args = ("encoder", "projection_head", "augmenter")
    multi_view = True

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        num_classes: int | None = None,
        num_views: int = 2,
        **kwargs,
    ):
        super().__init__(encoder, augmenter, num_views, num_classes, **kwargs)
        self.projection_head = projection_head
        self.contrastive_accuracy = keras.metrics.SparseCategoricalAccuracy(name="contrastive_accuracy")
        self._build_now()

    @classmethod
    def from_settings(cls, encoder, augmenter, settings: SimCLRSettings, **common) -> SimCLR:
        norm = settings.projection_batch_norm
        head = ProjectionHead(
            settings.projection_layers,
            settings.projection_dim,
            settings.projection_hidden_dim,
            batch_norm=None if norm == "paper" else norm == "all",
            output_center=norm == "all",
        )
        return cls(encoder, head, augmenter, **common, **settings.model_arguments())

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


@keras.saving.register_keras_serializable(package="contrastive_tf")
class SupCon(SimCLR):
    """Supervised contrastive learning (Khosla et al. 2020): SimCLR whose positives are all
    views of the same class, so it needs (images, labels) batches. Same arguments as
    `SimCLR`, and the loss's form and scale (see `SupConSettings`)."""

    Settings = SupConSettings
    needs_labels = True

    def contrastive_loss(self, z, labels):
        if labels is None:
            raise ValueError("SupCon needs (images, labels) batches; these batches have no labels.")
        labels = tf.tile(tf.reshape(labels, [-1]), [len(z)])
        loss = supcon_loss(
            tf.concat(z, axis=0),
            labels,
            self.temperature,
            form=self.supcon_form,
            base_temperature=self.base_temperature,
        )
        return loss, nt_xent_logits(z[0], z[1], self.temperature)
