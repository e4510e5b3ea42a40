"""BYOL (Grill et al. 2020): the online network predicts the target network's projection
of the other view; the target is a momentum copy of the online encoder and head, whose
momentum rises from 0.996 to 1 over training. No negatives."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.heads import ProjectionHead, prediction_head
from contrastive_tf.losses import normalized_regression_loss
from contrastive_tf.methods.base import ContrastiveModel, asymmetric_augmenters
from contrastive_tf.methods.momentum import MomentumNetwork, byol_momentum


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
        second_augmenter: draws the second view; None draws both with `augmenter`.
        base_momentum: the target's momentum at the first step; it rises to 1 along a
            cosine over `total_steps`.
        total_steps: the length of training, for the momentum schedule.
        num_classes: classes of the online probe; None turns it off.
        num_views: 2.
    """

    layer_args = ("encoder", "projection_head", "predictor", "augmenter", "second_augmenter")

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        predictor: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        base_momentum: float = 0.996,
        total_steps: int = 1000,
        num_classes: int | None = None,
        num_views: int = 2,
        second_augmenter: keras.layers.Layer | None = None,
        **kwargs,
    ):
        super().__init__(encoder, augmenter, num_views, num_classes, second_augmenter, **kwargs)
        if not 0 <= base_momentum <= 1:
            raise ValueError(f"`base_momentum` must be in [0, 1]; received base_momentum={base_momentum}.")
        if total_steps < 1:
            raise ValueError(f"`total_steps` must be >= 1; received total_steps={total_steps}.")
        self.projection_head, self.predictor = projection_head, predictor
        self.base_momentum, self.total_steps = base_momentum, total_steps
        self.target_network = MomentumNetwork(encoder, projection_head, name="target_network")
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
        target_momentum: float = 0.996,
        projection_layers: int = 2,
        projection_dim: int = 256,
        projection_hidden_dim: int = 4096,
        predictor_hidden_dim: int = 4096,
        asymmetric_views: bool = True,
    ) -> BYOL:
        """BYOL with the paper's networks (`byol/utils/networks.py`, MLP): projector and
        predictor are Dense(4096)-BN-ReLU-Dense(256), BN on the hidden layer only and no
        bias on the output; the sizes are the same on ImageNet and CIFAR (solo-learn's
        `scripts/pretrain/cifar/byol.yaml`).

        With `asymmetric_views` and a `SimCLRAugment`, the views are drawn as the paper's
        (`byol/utils/augmentations.py`; see `asymmetric_augmenters`)."""
        head = ProjectionHead(
            projection_layers,
            projection_dim,
            projection_hidden_dim,
            batch_norm=True,
            output_norm=False,
            output_bias=False,
        )
        predictor = prediction_head(projection_dim, predictor_hidden_dim, output_bias=False)
        augmenter, second = asymmetric_augmenters(augmenter, asymmetric_views)
        return cls(encoder, head, predictor, augmenter, target_momentum, total_steps, num_classes, num_views, second)

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
        momentum = byol_momentum(self.optimizer.iterations, self.total_steps, self.base_momentum)
        self.target_network.update(self.encoder, self.projection_head, momentum)
        self.loss_tracker.update_state(loss)
        return self._logs()

    def get_config(self):
        return {**super().get_config(), "base_momentum": self.base_momentum, "total_steps": self.total_steps}
