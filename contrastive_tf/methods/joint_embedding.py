"""The joint-embedding methods without negatives, predictor or momentum network (Barlow
Twins, VICReg): both views through the same encoder and projection head (the papers'
"projector" or "expander"), and a loss on statistics of the two views' embeddings over the
global batch that keeps them from collapsing."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.heads import ProjectionHead
from contrastive_tf.methods.base import ContrastiveModel, asymmetric_augmenters


def expander(num_layers: int, output_dim: int, hidden_dim: int, output_bias: bool = False) -> ProjectionHead:
    """Barlow Twins' projector and VICReg's expander (facebookresearch/barlowtwins
    `main.py`, `BarlowTwins.__init__`; facebookresearch/vicreg `main_vicreg.py`,
    `Projector`): Dense-BN-ReLU for each hidden layer, then a Dense without bias (with one if
    `output_bias`, as solo-learn's). (The
    references' hidden Dense layers in VICReg have a bias, which the BN cancels.)"""
    return ProjectionHead(
        num_layers, output_dim, hidden_dim, batch_norm=True, output_norm=False, output_bias=output_bias
    )


class JointEmbeddingModel(ContrastiveModel):
    """Two views per image, each through the encoder and the projection head on its own
    as the references do, and `embedding_loss` on the two views' embeddings z = g(f(view)).
    A method is this class and its `embedding_loss`.

    Args:
        encoder, augmenter: as in `ContrastiveModel`.
        projection_head: g, h -> z; see `expander`.
        num_classes: classes of the online probe; None turns it off.
        num_views: 2.
        second_augmenter: draws the second view; None draws both with `augmenter`.
    """

    layer_args = ("encoder", "projection_head", "augmenter", "second_augmenter")

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        num_classes: int | None = None,
        num_views: int = 2,
        second_augmenter: keras.layers.Layer | None = None,
        **kwargs,
    ):
        super().__init__(encoder, augmenter, num_views, num_classes, second_augmenter, **kwargs)
        self.projection_head = projection_head
        self._build_now()

    @classmethod
    def from_settings(cls, encoder, augmenter, settings, **common) -> JointEmbeddingModel:
        """The method with its `expander` and, with `asymmetric_views` and a `SimCLRAugment`,
        the views drawn as BYOL's (see `asymmetric_augmenters`)."""
        head = expander(
            settings.projection_layers,
            settings.projection_dim,
            settings.projection_hidden_dim,
            settings.head_output_bias,
        )
        augmenter, second = asymmetric_augmenters(augmenter, settings.asymmetric_views, settings.color_jitter)
        return cls(encoder, head, augmenter, second_augmenter=second, **common, **settings.model_arguments())

    def heads(self):
        return [self.projection_head]

    def embedding_loss(self, z_a: tf.Tensor, z_b: tf.Tensor) -> tf.Tensor:
        """The method's loss on the embeddings [n, d] of the two views of this replica's images."""
        raise NotImplementedError(f"{type(self).__name__} has no embedding_loss")

    def train_step(self, data):
        (view_a, view_b), labels = self.views(data)
        with tf.GradientTape() as tape:
            h_a, h_b = self.encoder(view_a, training=True), self.encoder(view_b, training=True)
            z_a, z_b = self.projection_head(h_a, training=True), self.projection_head(h_b, training=True)
            loss = self.embedding_loss(z_a, z_b)
            total = loss + self.probe_loss(h_a, labels)
        self.minimize(tape, total)
        self.loss_tracker.update_state(loss)
        return self._logs()
