"""contrastive_tf: contrastive self-supervised learning in TensorFlow/Keras: SimCLR, MoCo,
BYOL, SimSiam, SupCon, Barlow Twins, VICReg and NNCLR (`METHODS`)."""

from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.config import PretrainConfig
from contrastive_tf.data import load_data
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.export import export_encoder
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.losses import nt_xent_loss
from contrastive_tf.methods import (
    BYOL,
    METHODS,
    NNCLR,
    BarlowTwins,
    ContrastiveModel,
    MoCo,
    SimCLR,
    SimSiam,
    SupCon,
    VICReg,
    contrastive_model,
)
from contrastive_tf.pretraining import pretrain
from contrastive_tf.run_folder import load_pretrained

__all__ = [
    "BYOL",
    "METHODS",
    "NNCLR",
    "BarlowTwins",
    "ContrastiveModel",
    "MoCo",
    "PretrainConfig",
    "ProjectionHead",
    "SimCLR",
    "SimCLRAugment",
    "SimSiam",
    "SupCon",
    "UsageError",
    "VICReg",
    "build_encoder",
    "contrastive_model",
    "export_encoder",
    "load_data",
    "load_pretrained",
    "nt_xent_loss",
    "pretrain",
]
__version__ = "0.1.0"
