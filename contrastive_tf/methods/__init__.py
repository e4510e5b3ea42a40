"""Every method by name. A method is one module here holding its settings (a
`MethodSettings` dataclass: each setting declared once, with its default, help and rule)
and a `ContrastiveModel` whose `train_step` is the method, whose `from_settings` builds it
the paper's way, and whose `check` refuses settings it cannot train with; `METHODS` names it.

Adding a method is one new module and one line in `METHODS`: its settings become flags of
`experiments.pretrain` and rows of docs/cli.md by themselves.
"""

from __future__ import annotations

import dataclasses

import keras

from contrastive_tf.errors import UsageError
from contrastive_tf.methods.barlow_twins import BarlowTwins
from contrastive_tf.methods.base import ContrastiveModel
from contrastive_tf.methods.byol import BYOL
from contrastive_tf.methods.moco import MoCo
from contrastive_tf.methods.mocov3 import MoCoV3
from contrastive_tf.methods.nnclr import NNCLR
from contrastive_tf.methods.settings import MethodSettings
from contrastive_tf.methods.simclr import SimCLR, SupCon
from contrastive_tf.methods.simsiam import SimSiam
from contrastive_tf.methods.vicreg import VICReg

METHODS: dict[str, type[ContrastiveModel]] = {
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "simsiam": SimSiam,
    "supcon": SupCon,
    "barlow_twins": BarlowTwins,
    "vicreg": VICReg,
    "nnclr": NNCLR,
    "mocov3": MoCoV3,
}


def method_class(method: str) -> type[ContrastiveModel]:
    """The model class of `method`; UsageError naming the known ones otherwise."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[method]


def setting_names() -> set[str]:
    """The names of the settings some method has (temperature, queue_size, ...)."""
    return set().union(*(model_class.settings() for model_class in METHODS.values()))


def setting_fields() -> dict[str, list[tuple[str, dataclasses.Field]]]:
    """Each setting some method has, with (method, its declaration) for every method that
    has it, in the order the methods declare them."""
    fields: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for method, model_class in METHODS.items():
        for field in dataclasses.fields(model_class.Settings):
            fields.setdefault(field.name, []).append((method, field))
    return fields


def check_method(method: str, batch_size: int, num_views: int = 2, **settings) -> None:
    """UsageError unless `method` can train on batches of `batch_size` images with
    `num_views` views each and `settings` (its own, see `ContrastiveModel.settings`)."""
    _check_views(method, num_views)
    method_class(method).check(batch_size, **settings)


def _check_views(method: str, num_views: int) -> None:
    model_class = method_class(method)
    if num_views < 2:
        raise UsageError(f"num_views must be >= 2, got {num_views}")
    if num_views != 2 and not model_class.multi_view:
        multi_view = [name for name, other in METHODS.items() if other.multi_view]
        raise UsageError(
            f"{method} compares two views, got num_views={num_views}; "
            f"more views work with method {' or '.join(multi_view)}"
        )


def contrastive_model(
    method: str,
    encoder: keras.Model,
    augmenter: keras.layers.Layer,
    *,
    num_views: int = 2,
    num_classes: int | None = None,
    total_steps: int = 1000,
    batch_size: int | None = None,
    **settings,
) -> ContrastiveModel:
    """The model of `method` (a key of `METHODS`) around `encoder` and `augmenter`.

    Args:
        method: a key of `METHODS`; supcon needs labelled batches.
        num_views: views per image; more than 2 only for methods whose loss takes them.
        num_classes: classes of the online linear probe; None turns it off.
        total_steps: the training length, for schedules such as BYOL's momentum.
        batch_size: the global batch size, for the defaults that depend on it (VICReg's
            expander width); None takes the paper's.
        **settings: the method's own (the fields of `METHODS[method].Settings`), with its
            defaults where left out: temperature, target_momentum, queue_size,
            redundancy_weight, projection_layers, projection_dim, ...

    Example:
        >>> model = contrastive_model("byol", small_cnn(), SimCLRAugment(seed=0), total_steps=1400)
        >>> model.compile(optimizer="adam")
    """
    _check_views(method, num_views)
    return method_class(method).create(
        encoder,
        augmenter,
        num_views=num_views,
        num_classes=num_classes,
        total_steps=total_steps,
        batch_size=batch_size,
        **settings,
    )


__all__ = [
    *(model_class.__name__ for model_class in METHODS.values()),
    "METHODS",
    "ContrastiveModel",
    "MethodSettings",
    "contrastive_model",
]
