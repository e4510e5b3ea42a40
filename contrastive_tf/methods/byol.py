"""BYOL (Grill et al. 2020): the online network predicts the target network's projection
of the other view; the target is a momentum copy of the online encoder and head, whose
momentum rises from 0.996 to 1 over training. No negatives."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from contrastive_tf.heads import ProjectionHead, prediction_head
from contrastive_tf.losses import normalized_regression_loss
from contrastive_tf.methods import settings
from contrastive_tf.methods.base import ContrastiveModel, asymmetric_augmenters
from contrastive_tf.methods.momentum import MomentumNetwork, scheduled_momentum


@dataclasses.dataclass(frozen=True)
class BYOLSettings(settings.MethodSettings):
    """BYOL's settings: the paper's networks (`byol/utils/networks.py`, MLP), projector and
    predictor Dense(4096)-BN-ReLU-Dense(256), the same on ImageNet and CIFAR (solo-learn's
    `scripts/pretrain/cifar/byol.yaml`); the target's momentum from 0.996 to 1; the views
    drawn as the paper's (`byol/utils/augmentations.py`, see `asymmetric_augmenters`)."""

    method = "byol"
    target_momentum: float = settings.target_momentum(0.996)
    momentum_schedule: str = settings.momentum_schedule("cosine")
    projection_layers: int = settings.projection_layers(2)
    projection_dim: int = settings.projection_dim(256)
    projection_hidden_dim: int | None = settings.projection_hidden_dim(4096)
    predictor_hidden_dim: int = settings.predictor_hidden_dim(4096)
    head_output_bias: bool = settings.head_output_bias(False)
    asymmetric_views: bool = settings.asymmetric_views(True)
    color_jitter: str = settings.color_jitter("byol")


@keras.saving.register_keras_serializable(package="contrastive_tf")
class BYOL(ContrastiveModel):
    """BYOL: loss = |q(g(f(v1))) - g'(f'(v2))|^2 on unit vectors, both ways round, where f'
    and g' are the momentum copies of f and g. As the reference (google-deepmind/byol,
    `byol/byol_experiment.py`), each view goes through the networks on its own, and the two
    views may be drawn differently (`second_augmenter`; see `create`).

    Args:
        encoder, projection_head, augmenter: as in `SimCLR` (the paper's head is
            Dense(4096)-BN-ReLU-Dense(256), see `create`).
        predictor: q, z -> z, the same MLP; see `heads.prediction_head`.
        num_classes: classes of the online probe; None turns it off.
        num_views: 2.
        second_augmenter: draws the second view; None draws both with `augmenter`.
        total_steps: the length of training, over which the momentum rises from
            `target_momentum` to 1 along a cosine (`momentum_schedule` cosine).
        target_momentum, momentum_schedule: see `BYOLSettings`.
    """

    Settings = BYOLSettings
    renamed_settings = {"base_momentum": "target_momentum"}
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
        self.target_network = MomentumNetwork(encoder, projection_head, name="target_network")
        self._build_now()

    @classmethod
    def from_settings(cls, encoder, augmenter, settings: BYOLSettings, **common) -> BYOL:
        """Projector and predictor with BN on the hidden layer only and (BYOL's) no bias on the output."""
        head = ProjectionHead(
            settings.projection_layers,
            settings.projection_dim,
            settings.projection_hidden_dim,
            batch_norm=True,
            output_norm=False,
            output_bias=settings.head_output_bias,
        )
        predictor = prediction_head(
            settings.projection_dim, settings.predictor_hidden_dim, output_bias=settings.head_output_bias
        )
        augmenter, second = asymmetric_augmenters(augmenter, settings.asymmetric_views, settings.color_jitter)
        return cls(encoder, head, predictor, augmenter, second_augmenter=second, **common, **settings.model_arguments())

    def heads(self):
        return [self.projection_head, self.predictor]

    def build(self, input_shape):
        super().build(input_shape)
        if not self.target_network.built:
            self.target_network.build(input_shape)
            self.target_network.copy_weights(self.encoder, self.projection_head)

    def train_step(self, data):
        views, labels = self.views(data)
        # Each view's target is the target network's projection of the other view.
        targets = [self.target_network(view, training=True) for view in reversed(views)]
        with tf.GradientTape() as tape:
            h = [self.encoder(view, training=True) for view in views]
            predictions = [self.predictor(self.projection_head(x, training=True), training=True) for x in h]
            loss = sum(normalized_regression_loss(p, z) for p, z in zip(predictions, targets))
            total = loss + self.probe_loss(h[0], labels)
        self.minimize(tape, total)
        momentum = scheduled_momentum(
            self.optimizer.iterations, self.total_steps, self.target_momentum, self.momentum_schedule
        )
        self.target_network.update(self.encoder, self.projection_head, momentum)
        self.loss_tracker.update_state(loss)
        return self._logs()
