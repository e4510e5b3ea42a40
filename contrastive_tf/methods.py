"""Every method by name: one factory makes the model for SimCLR, MoCo, BYOL, SimSiam or
SupCon around the same encoder and augmentation, so that a user changes one word."""

from __future__ import annotations

import keras

from contrastive_tf.byol import BYOL
from contrastive_tf.errors import UsageError
from contrastive_tf.heads import ProjectionHead, prediction_head
from contrastive_tf.moco import MoCo
from contrastive_tf.model import ContrastiveModel, SimCLR, SupCon
from contrastive_tf.simsiam import SimSiam

METHODS = ("simclr", "moco", "byol", "simsiam", "supcon")
# The methods whose loss compares more than two views of an image.
MULTI_VIEW_METHODS = ("simclr", "supcon")
# The target network's momentum when none is given: MoCo's for short runs, BYOL's base.
DEFAULT_MOMENTUM = {"moco": 0.99, "byol": 0.996}


def check_method(method: str, num_views: int = 2) -> None:
    """UsageError unless `method` is known and takes `num_views` views."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if num_views < 2:
        raise UsageError(f"num_views must be >= 2, got {num_views}")
    if num_views != 2 and method not in MULTI_VIEW_METHODS:
        raise UsageError(
            f"{method} compares two views, got num_views={num_views}; "
            f"more views work with --method={' or '.join(MULTI_VIEW_METHODS)}"
        )


def contrastive_model(
    method: str,
    encoder: keras.Model,
    augmenter: keras.layers.Layer,
    *,
    projection_layers: int = 2,
    projection_dim: int = 128,
    temperature: float = 0.2,
    momentum: float | None = None,
    queue_size: int = 4096,
    bn_groups: int = 4,
    total_steps: int = 1000,
    num_views: int = 2,
    num_classes: int | None = None,
) -> ContrastiveModel:
    """The model of `method` (one of `METHODS`) around `encoder` and `augmenter`.

    Args:
        method: simclr, moco, byol, simsiam or supcon (which needs labelled batches).
        projection_layers, projection_dim: the projection head g. BYOL's normalises its
            hidden layers, SimSiam's every layer; BYOL and SimSiam add a predictor.
        temperature: tau of NT-Xent (simclr), InfoNCE (moco) and SupCon.
        momentum: the momentum network's (moco, byol); None: `DEFAULT_MOMENTUM`.
        queue_size: MoCo's negatives.
        bn_groups: MoCo's groups with their own batch-norm statistics (its shuffling BN).
        total_steps: the training length, for BYOL's momentum schedule.
        num_views: views per image; more than 2 only for `MULTI_VIEW_METHODS`.
        num_classes: classes of the online linear probe; None turns it off.

    Example:
        >>> model = contrastive_model("byol", small_cnn(), SimCLRAugment(seed=0), total_steps=1400)
        >>> model.compile(optimizer="adam")
    """
    check_method(method, num_views)
    momentum = DEFAULT_MOMENTUM.get(method) if momentum is None else momentum
    common = dict(num_classes=num_classes, num_views=num_views)
    if method in ("simclr", "supcon"):
        head = ProjectionHead(projection_layers, projection_dim)
        return (SimCLR if method == "simclr" else SupCon)(encoder, head, augmenter, temperature, **common)
    if method == "moco":
        head = ProjectionHead(projection_layers, projection_dim)
        return MoCo(encoder, head, augmenter, temperature, momentum, queue_size, bn_groups=bn_groups, **common)
    if method == "byol":
        head = ProjectionHead(projection_layers, projection_dim, batch_norm=True, output_norm=False)
        predictor = prediction_head(projection_dim, hidden_dim=encoder.output_shape[-1])
        return BYOL(encoder, head, predictor, augmenter, momentum, total_steps, **common)
    head = ProjectionHead(projection_layers, projection_dim, batch_norm=True)
    # SimSiam's predictor is a bottleneck, a quarter as wide as z.
    return SimSiam(encoder, head, prediction_head(projection_dim, max(8, projection_dim // 4)), augmenter, **common)
