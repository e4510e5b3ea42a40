"""contrastive_tf: contrastive self-supervised learning in TensorFlow/Keras. Each method
of `METHODS` is exported here under its class name (`SimCLR`, ...); docs/methods.md
tells them apart."""

from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.config import PretrainConfig
from contrastive_tf.data import load_data
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.export import export_encoder
from contrastive_tf.heads import ProjectionHead
from contrastive_tf.losses import nt_xent_loss
from contrastive_tf.methods import METHODS, ContrastiveModel, contrastive_model
from contrastive_tf.pretraining import pretrain
from contrastive_tf.run_folder import load_pretrained

# The methods' classes come from the registry, so a new method needs no line here.
globals().update({model_class.__name__: model_class for model_class in METHODS.values()})

__all__ = [
    *sorted(model_class.__name__ for model_class in METHODS.values()),
    "METHODS",
    "ContrastiveModel",
    "PretrainConfig",
    "ProjectionHead",
    "SimCLRAugment",
    "UsageError",
    "build_encoder",
    "contrastive_model",
    "export_encoder",
    "load_data",
    "load_pretrained",
    "nt_xent_loss",
    "pretrain",
]
__version__ = "0.1.0"
