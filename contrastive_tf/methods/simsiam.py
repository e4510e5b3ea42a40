"""SimSiam (Chen & He 2021): BYOL without the momentum network. The predictor and a
stop-gradient on the other branch are what keep it from collapsing."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from contrastive_tf.heads import ProjectionHead, prediction_head
from contrastive_tf.losses import negative_cosine_loss
from contrastive_tf.methods import settings
from contrastive_tf.methods.base import ContrastiveModel


@dataclasses.dataclass(frozen=True)
class SimSiamSettings(settings.MethodSettings):
    """SimSiam's networks (`simsiam/builder.py`): a projector of three Dense(2048)-BN
    layers and a bottleneck predictor Dense(512)-BN-ReLU-Dense(2048). On CIFAR, solo-learn
    (`scripts/pretrain/cifar/simsiam.yaml`) keeps these sizes on ResNet-18's 512-d h;
    lightly's CIFAR-10 benchmark uses `projection_layers=2`."""

    method = "simsiam"
    projection_layers: int = settings.projection_layers(3)
    projection_dim: int = settings.projection_dim(2048)
    projection_hidden_dim: int | None = settings.projection_hidden_dim(2048)
    predictor_hidden_dim: int = settings.predictor_hidden_dim(512)


@keras.saving.register_keras_serializable(package="contrastive_tf")
class SimSiam(ContrastiveModel):
    """SimSiam: loss = D(p1, stop_gradient(z2)) / 2 + D(p2, stop_gradient(z1)) / 2, with
    z = g(f(view)), p = q(z) and D the negative cosine similarity; -1 is its minimum.
    As the reference (facebookresearch/simsiam, `simsiam/builder.py`, `SimSiam.forward`),
    each view goes through the network on its own.

    Args:
        encoder, projection_head, augmenter: as in `SimCLR` (the paper's head has three
            layers of 2048, each with batch norm, see `create`).
        predictor: q, z -> z, a bottleneck MLP; see `heads.prediction_head`.
        num_classes: classes of the online probe; None turns it off.
        num_views: 2.
    """

    Settings = SimSiamSettings
    layer_args = ("encoder", "projection_head", "predictor", "augmenter")

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        predictor: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        num_classes: int | None = None,
        num_views: int = 2,
        **kwargs,
    ):
        super().__init__(encoder, augmenter, num_views, num_classes, **kwargs)
        self.projection_head, self.predictor = projection_head, predictor
        self._build_now()

    @classmethod
    def from_settings(cls, encoder, augmenter, settings: SimSiamSettings, **common) -> SimSiam:
        """ReLU between the projector's layers, its last BN without scale or shift (affine=False)."""
        head = ProjectionHead(
            settings.projection_layers,
            settings.projection_dim,
            settings.projection_hidden_dim,
            batch_norm=True,
            output_scale=False,
        )
        predictor = prediction_head(settings.projection_dim, settings.predictor_hidden_dim)
        return cls(encoder, head, predictor, augmenter, **common)

    def heads(self):
        return [self.projection_head, self.predictor]

    def train_step(self, data):
        (view_a, view_b), labels = self.views(data)
        with tf.GradientTape() as tape:
            h_a, h_b = self.encoder(view_a, training=True), self.encoder(view_b, training=True)
            z_a, z_b = self.projection_head(h_a, training=True), self.projection_head(h_b, training=True)
            p_a, p_b = self.predictor(z_a, training=True), self.predictor(z_b, training=True)
            loss = (
                negative_cosine_loss(p_a, tf.stop_gradient(z_b)) + negative_cosine_loss(p_b, tf.stop_gradient(z_a))
            ) / 2
            total = loss + self.probe_loss(h_a, labels)
        self.minimize(tape, total)
        self.loss_tracker.update_state(loss)
        return self._logs()
