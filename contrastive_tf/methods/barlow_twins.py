"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views' normalised
embeddings over the global batch is pulled towards the identity, so that the views agree
(diagonal 1) and the embedding's dimensions do not repeat each other (off-diagonal 0)."""

from __future__ import annotations

import keras
import tensorflow as tf

from contrastive_tf.losses import barlow_twins_loss
from contrastive_tf.methods.base import asymmetric_augmenters
from contrastive_tf.methods.joint_embedding import JointEmbeddingModel, expander


@keras.saving.register_keras_serializable(package="contrastive_tf")
class BarlowTwins(JointEmbeddingModel):
    """Barlow Twins: loss = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2, with C the
    cross-correlation of z_a and z_b, each batch-normalised over the global batch (see
    `losses.barlow_twins_loss`). As the reference (facebookresearch/barlowtwins `main.py`,
    `BarlowTwins.forward`), each view goes through the networks on its own and the two
    views are drawn as BYOL's (see `create`).

    Args:
        encoder, projection_head, augmenter: as in `JointEmbeddingModel` (the paper's
            projector is three Dense layers of 8192, see `create`).
        redundancy_weight: lambda >= 0, the weight of the off-diagonal terms.
        num_classes, num_views, second_augmenter: as in `JointEmbeddingModel`.

    Example:
        >>> model = contrastive_model("barlow_twins", small_cnn(), SimCLRAugment(seed=0), projection_dim=2048)
        >>> model.compile(optimizer=LARS(0.3))
    """

    def __init__(
        self,
        encoder: keras.Model,
        projection_head: keras.layers.Layer,
        augmenter: keras.layers.Layer,
        redundancy_weight: float = 5e-3,
        num_classes: int | None = None,
        num_views: int = 2,
        second_augmenter: keras.layers.Layer | None = None,
        **kwargs,
    ):
        super().__init__(encoder, projection_head, augmenter, num_classes, num_views, second_augmenter, **kwargs)
        if redundancy_weight < 0:
            raise ValueError(f"`redundancy_weight` must be >= 0; received redundancy_weight={redundancy_weight}.")
        self.redundancy_weight = redundancy_weight
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
        redundancy_weight: float = 5e-3,
        projection_layers: int = 3,
        projection_dim: int = 8192,
        projection_hidden_dim: int = 8192,
        asymmetric_views: bool = True,
    ) -> BarlowTwins:
        """Barlow Twins with the paper's ImageNet projector (the reference's `--projector
        8192-8192-8192`): three Dense layers of 8192, BN and ReLU after the first two;
        lambda 5e-3 as in the paper (the reference's `--lambd` is 0.0051). On CIFAR-10,
        solo-learn (`scripts/pretrain/cifar/barlow.yaml`) keeps three layers, 2048 wide, on
        ResNet-18's 512-d h; lightly's CIFAR-10 benchmark uses two (512 -> 2048 -> 2048).
        With `asymmetric_views` and a `SimCLRAugment`, the views are drawn as the
        reference's `Transform` draws them (see `asymmetric_augmenters`)."""
        head = expander(projection_layers, projection_dim, projection_hidden_dim)
        augmenter, second = asymmetric_augmenters(augmenter, asymmetric_views)
        return cls(encoder, head, augmenter, redundancy_weight, num_classes, num_views, second)

    def embedding_loss(self, z_a: tf.Tensor, z_b: tf.Tensor) -> tf.Tensor:
        return barlow_twins_loss(z_a, z_b, self.redundancy_weight)

    def get_config(self):
        return {**super().get_config(), "redundancy_weight": self.redundancy_weight}
