"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views' normalised
embeddings over the global batch is pulled towards the identity, so that the views agree
(diagonal 1) and the embedding's dimensions do not repeat each other (off-diagonal 0)."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from contrastive_tf.losses import barlow_twins_loss
from contrastive_tf.methods import settings
from contrastive_tf.methods.joint_embedding import JointEmbeddingModel
from contrastive_tf.settings import at_least, setting


@dataclasses.dataclass(frozen=True)
class BarlowTwinsSettings(settings.MethodSettings):
    """Barlow Twins' settings: the paper's ImageNet projector (the reference's `--projector
    8192-8192-8192`), lambda 5e-3 as in the paper (the reference's `--lambd` is 0.0051).
    On CIFAR-10 solo-learn (`scripts/pretrain/cifar/barlow.yaml`) keeps three layers, 2048
    wide, on ResNet-18's 512-d h; lightly's CIFAR-10 benchmark uses two (512 -> 2048 ->
    2048). The views are drawn as the reference's `Transform` (see `asymmetric_augmenters`)."""

    method = "barlow_twins"
    redundancy_weight: float = setting(
        5e-3, "Barlow Twins' lambda, the weight of the off-diagonal (redundancy) terms.", valid=at_least(0)
    )
    projection_layers: int = settings.projection_layers(3)
    projection_dim: int = settings.projection_dim(8192)
    projection_hidden_dim: int | None = settings.projection_hidden_dim(8192)
    head_output_bias: bool = settings.head_output_bias(False)
    asymmetric_views: bool = settings.asymmetric_views(True)
    color_jitter: str = settings.color_jitter("torchvision")
    loss_scale: float = setting(
        1.0,
        "Multiplies Barlow Twins' loss: 1 in the paper's reference, 0.1 in solo-learn (scale_loss), which matters "
        "to the steps LARS does not rescale.",
        valid=at_least(0),
    )


@keras.saving.register_keras_serializable(package="contrastive_tf")
class BarlowTwins(JointEmbeddingModel):
    """Barlow Twins: loss = sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2, with C the
    cross-correlation of z_a and z_b, each batch-normalised over the global batch (see
    `losses.barlow_twins_loss`). As the reference (facebookresearch/barlowtwins `main.py`,
    `BarlowTwins.forward`), each view goes through the networks on its own and the two
    views are drawn as BYOL's (see `BarlowTwinsSettings`).

    Args:
        encoder, projection_head, augmenter: as in `JointEmbeddingModel` (the paper's
            projector is three Dense layers of 8192, see `BarlowTwinsSettings`).
        num_classes, num_views, second_augmenter: as in `JointEmbeddingModel`.
        redundancy_weight: lambda >= 0, the weight of the off-diagonal terms.
        loss_scale: a factor on the loss (solo-learn's `scale_loss`).

    Example:
        >>> model = contrastive_model("barlow_twins", small_cnn(), SimCLRAugment(seed=0), projection_dim=2048)
        >>> model.compile(optimizer=LARS(0.3))
    """

    Settings = BarlowTwinsSettings

    def embedding_loss(self, z_a: tf.Tensor, z_b: tf.Tensor) -> tf.Tensor:
        return self.loss_scale * barlow_twins_loss(z_a, z_b, self.redundancy_weight)
