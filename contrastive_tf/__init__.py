"""contrastive_tf: contrastive self-supervised learning (SimCLR family) in TensorFlow/Keras."""

from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.data import load_data
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.export import export_encoder
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.losses import nt_xent_loss
from contrastive_tf.model import SimCLR
from contrastive_tf.pretraining import PretrainConfig, pretrain

__all__ = [
    "PretrainConfig",
    "ProjectionHead",
    "SimCLR",
    "SimCLRAugment",
    "UsageError",
    "build_encoder",
    "export_encoder",
    "load_data",
    "nt_xent_loss",
    "pretrain",
]
__version__ = "0.1.0"
