"""NNCLR (Dwibedi et al. 2021): contrastive learning whose positive for a view is not the
other view of its image but the nearest neighbour of its projection in a support set of the
projections of recent batches."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from contrastive_tf.heads import ProjectionHead, prediction_head
from contrastive_tf.losses import nnclr_loss
from contrastive_tf.methods import settings
from contrastive_tf.methods.base import ContrastiveModel, asymmetric_augmenters
from contrastive_tf.methods.queue import KeyQueue, check_queue_size


@dataclasses.dataclass(frozen=True)
class NNCLRSettings(settings.MethodSettings):
    """NNCLR's settings: the paper's networks, temperature and support set of 98,304; a
    projector of three Dense layers [2048, 2048, 256] and a predictor
    Dense(4096)-BN-ReLU-Dense(256). On CIFAR-10 solo-learn (`scripts/pretrain/cifar/nnclr.yaml`)
    keeps these sizes, with temperature 0.2 and a support set of 65,536. The views are drawn
    as BYOL's (see `asymmetric_augmenters`)."""

    method = "nnclr"
    temperature: float = settings.temperature(0.1)
    queue_size: int = settings.queue_size(98304)
    projection_layers: int = settings.projection_layers(3)
    projection_dim: int = settings.projection_dim(256)
    projection_hidden_dim: int | None = settings.projection_hidden_dim(2048)
    predictor_hidden_dim: int = settings.predictor_hidden_dim(4096)
    asymmetric_views: bool = settings.asymmetric_views(True)
    color_jitter: str = settings.color_jitter("torchvision")


@keras.saving.register_keras_serializable(package="contrastive_tf")
class NNCLR(ContrastiveModel):
    """NNCLR: loss = (L(NN(z_a), p_b) + L(NN(z_b), p_a)) / 2, with z = g(f(view)), p = q(z),
    NN(z) the support set's row nearest to z (cosine) and L the InfoNCE of each neighbour
    against the other view's predictions of the global batch (see `losses.nnclr_loss`).
    After each step the first view's projections of the global batch join the support set.

    It follows solo-learn (`solo/methods/nnclr.py`, `NNCLR.training_step`): each view
    through the networks on its own, the neighbours found before the batch is enqueued, the
    support set starting from random unit vectors.

    Args:
        encoder, projection_head, augmenter: as in `SimCLR` (the paper's head has three
            layers, each with batch norm, see `create`).
        predictor: q, z -> z; see `heads.prediction_head`.
        num_classes: classes of the online probe; None turns it off.
        num_views: 2.
        second_augmenter: draws the second view; None draws both with `augmenter`.
        temperature: tau > 0.
        queue_size: the support set's size; at least the global batch size.
    """

    Settings = NNCLRSettings
    layer_args = ("encoder", "projection_head", "predictor", "augmenter", "second_augmenter")

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        predictor: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        num_classes: int | None = None,
        num_views: int = 2,
        second_augmenter: keras.layers.Layer | None = None,
        **kwargs,
    ):
        super().__init__(encoder, augmenter, num_views, num_classes, second_augmenter, **kwargs)
        self.projection_head, self.predictor = projection_head, predictor
        self.support_set = KeyQueue(self.queue_size, name="support_set")
        self._build_now()

    @classmethod
    def from_settings(cls, encoder, augmenter, settings: NNCLRSettings, **common) -> NNCLR:
        """Each projector layer followed by batch norm (the last without a learned shift here)."""
        head = ProjectionHead(
            settings.projection_layers, settings.projection_dim, settings.projection_hidden_dim, batch_norm=True
        )
        predictor = prediction_head(settings.projection_dim, settings.predictor_hidden_dim)
        augmenter, second = asymmetric_augmenters(augmenter, settings.asymmetric_views, settings.color_jitter)
        return cls(encoder, head, predictor, augmenter, second_augmenter=second, **common, **settings.model_arguments())

    @classmethod
    def check(cls, batch_size: int, **settings) -> NNCLRSettings:
        own = super().check(batch_size, **settings)
        check_queue_size("nnclr", own.queue_size, batch_size)
        return own

    def heads(self):
        return [self.projection_head, self.predictor]

    def build(self, input_shape):
        super().build(input_shape)
        if not self.support_set.built:
            self.support_set.build(
                self.projection_head.compute_output_shape(self.encoder.compute_output_shape(input_shape))
            )

    def train_step(self, data):
        (view_a, view_b), labels = self.views(data)
        with tf.GradientTape() as tape:
            h_a, h_b = self.encoder(view_a, training=True), self.encoder(view_b, training=True)
            z_a, z_b = self.projection_head(h_a, training=True), self.projection_head(h_b, training=True)
            p_a, p_b = self.predictor(z_a, training=True), self.predictor(z_b, training=True)
            # Each view's positive is its projection's nearest neighbour in the support set.
            neighbours_a, neighbours_b = self.support_set.nearest(z_a), self.support_set.nearest(z_b)
            loss = (
                nnclr_loss(neighbours_a, p_b, self.temperature) + nnclr_loss(neighbours_b, p_a, self.temperature)
            ) / 2
            total = loss + self.probe_loss(h_a, labels)
        self.minimize(tape, total)
        self.support_set.enqueue(z_a)
        self.loss_tracker.update_state(loss)
        return self._logs()
