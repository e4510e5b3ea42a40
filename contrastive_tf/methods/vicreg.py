"""VICReg (Bardes et al. 2022): the two views' embeddings are pulled together (invariance)
while each dimension keeps a standard deviation of at least 1 over the global batch
(variance) and the dimensions stay uncorrelated (covariance)."""

from __future__ import annotations

import dataclasses
import logging

import keras
import tensorflow as tf

from contrastive_tf.losses import vicreg_loss
from contrastive_tf.methods import settings
from contrastive_tf.methods.joint_embedding import JointEmbeddingModel
from contrastive_tf.settings import at_least, setting

_log = logging.getLogger(__name__)
# The widest expander per image of the batch that learned here: the CIFAR-10 recipe's 2048 at
# batch 256 (the paper's is 8192 at 2048). On MNIST at batch 256, 2048 wide fell below
# random weights after 2 epochs and 512 wide did well (docs/methods.md).
WIDTH_PER_IMAGE = 8
# The paper's expander width per image of the batch (8192 at batch 2048), which the default
# keeps at smaller batches, and its width.
PAPER_WIDTH_PER_IMAGE = 4
PAPER_WIDTH = 8192


@dataclasses.dataclass(frozen=True)
class VICRegSettings(settings.MethodSettings):
    """VICReg's settings: the paper's expander and weights (the reference's `--mlp
    8192-8192-8192`, `--sim-coeff 25 --std-coeff 25 --cov-coeff 1`), three Dense layers with
    BN and ReLU after the first two. A batch of N spans at most N - 1 dimensions, so on
    batches much smaller than `projection_dim` the covariance term holds the variances
    down: the expander's width defaults to the paper's ratio, 4 per image of the global
    batch (8192 at 2048), up to the paper's 8192. At batch 128 on the MNIST sample that
    took the default run from 81.75% (8192 wide), below random weights' 83.20%, to 93.25%
    (512 wide); 1024 gave 91.20% and 256 93.00%. On CIFAR-10 solo-learn
    (`scripts/pretrain/cifar/vicreg.yaml`) uses 2048 at batch 256. The views are drawn as
    the reference's `augmentations.TrainTransform` (see `asymmetric_augmenters`)."""

    method = "vicreg"
    invariance_weight: float = setting(
        25.0, "VICReg's lambda, the weight of the invariance (mean squared error) term.", valid=at_least(0)
    )
    variance_weight: float = setting(
        25.0, "VICReg's mu, the weight of the variance (std hinge) term.", valid=at_least(0)
    )
    covariance_weight: float = setting(1.0, "VICReg's nu, the weight of the covariance term.", valid=at_least(0))
    projection_layers: int = settings.projection_layers(3)
    projection_dim: int | None = settings.projection_dim(None, unset="4 x batch, at most 8192")
    projection_hidden_dim: int | None = settings.projection_hidden_dim(None, unset="4 x batch, at most 8192")
    head_output_bias: bool = settings.head_output_bias(False)
    asymmetric_views: bool = settings.asymmetric_views(True)
    color_jitter: str = settings.color_jitter("torchvision")

    def for_batch(self, batch_size: int | None) -> VICRegSettings:
        """The expander's unset widths at the paper's ratio to the batch (the paper's 8192
        when the batch is not known)."""
        width = PAPER_WIDTH if batch_size is None else min(PAPER_WIDTH, PAPER_WIDTH_PER_IMAGE * batch_size)
        return dataclasses.replace(
            self,
            projection_dim=self.projection_dim or width,
            projection_hidden_dim=self.projection_hidden_dim or width,
        )


@keras.saving.register_keras_serializable(package="contrastive_tf")
class VICReg(JointEmbeddingModel):
    """VICReg: loss = lambda MSE(z_a, z_b) + mu (v(z_a) + v(z_b)) / 2 + nu (c(z_a) + c(z_b)),
    with v the hinge on each dimension's standard deviation and c the squared off-diagonal
    covariances over d, both over the global batch (see `losses.vicreg_loss`). As the
    reference (facebookresearch/vicreg `main_vicreg.py`, `VICReg.forward`), each view goes
    through the networks on its own and the two views are drawn as BYOL's (see `VICRegSettings`).

    Args:
        encoder, projection_head, augmenter: as in `JointEmbeddingModel` (the paper's
            expander is three Dense layers of 8192, see `VICRegSettings`).
        num_classes, num_views, second_augmenter: as in `JointEmbeddingModel`.
        invariance_weight: lambda >= 0, the weight of the mean squared error.
        variance_weight: mu >= 0, the weight of the variance hinge.
        covariance_weight: nu >= 0, the weight of the covariance term.

    Example:
        >>> model = contrastive_model("vicreg", small_cnn(), SimCLRAugment(seed=0), projection_dim=2048)
        >>> model.compile(optimizer=LARS(0.3))
    """

    Settings = VICRegSettings

    @classmethod
    def check(cls, batch_size: int, **settings) -> VICRegSettings:
        """Also warns (it may still train) when the expander is more than `WIDTH_PER_IMAGE`
        times wider than the batch: a batch of N spans at most N - 1 dimensions, so the
        covariance term holds the variances down."""
        own = super().check(batch_size, **settings)
        width = own.projection_dim
        if width > WIDTH_PER_IMAGE * batch_size:
            _log.warning(
                f"vicreg: the expander is {width} wide for batches of {batch_size}; on batches much narrower than "
                f"the expander the covariance term holds the variances down: pass --projection_dim and "
                f"--projection_hidden_dim of at most {WIDTH_PER_IMAGE * batch_size} (or a larger batch)"
            )
        return own

    def embedding_loss(self, z_a: tf.Tensor, z_b: tf.Tensor) -> tf.Tensor:
        return vicreg_loss(z_a, z_b, self.invariance_weight, self.variance_weight, self.covariance_weight)
