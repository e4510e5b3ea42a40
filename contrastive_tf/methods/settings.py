"""A method's own settings, declared once in its module as a `MethodSettings` dataclass:
`create` builds the method from them, its model takes the non-structural ones as keyword
arguments and saves them in `get_config`, and `PretrainConfig` has a flag for each.

A setting several methods share (temperature, the head's sizes, ...) is declared here once
with its help text; each method gives it its own default."""

from __future__ import annotations

import dataclasses
import typing

from contrastive_tf.errors import UsageError
from contrastive_tf.methods.momentum import MOMENTUM_SCHEDULES
from contrastive_tf.settings import at_least, check_fields, positive, setting, within

# The colour jitters of BYOL-style views (a subset of `augmentation.COLOR_JITTERS`).
ASYMMETRIC_JITTERS = ("torchvision", "byol")


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """The settings of a method; a subclass per method declares them as fields (see
    `contrastive_tf.settings.setting`). Made with `of`, which refuses unknown names and
    values the declarations do not allow."""

    method: typing.ClassVar[str] = "method"

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def of(cls, **settings) -> MethodSettings:
        """These settings, the method's defaults for the others; UsageError naming an
        unknown one or a value its declaration does not allow."""
        unknown = sorted(set(settings) - set(cls.defaults()))
        if unknown:
            raise UsageError(
                f"{cls.method} has no setting {unknown[0]}; its settings are: {', '.join(cls.defaults()) or 'none'}"
            )
        return cls(**settings)

    @classmethod
    def defaults(cls) -> dict[str, object]:
        return {field.name: field.default for field in dataclasses.fields(cls)}

    @classmethod
    def model_names(cls) -> tuple[str, ...]:
        """The settings the method's model takes as keyword arguments and saves."""
        return tuple(field.name for field in dataclasses.fields(cls) if not field.metadata["structural"])

    def model_arguments(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.model_names()}

    def for_batch(self, batch_size: int | None) -> MethodSettings:
        """These settings for a global batch of `batch_size` images (None: unknown), with
        the defaults that depend on the batch filled in; a method whose defaults do not
        returns them as they are."""
        return self

    @classmethod
    def default_text(cls, name: str) -> str:
        """The default of setting `name` as the docs say it."""
        field = {field.name: field for field in dataclasses.fields(cls)}[name]
        return field.metadata["unset"] if field.default is None else str(field.default)


def temperature(default: float) -> typing.Any:
    return setting(
        default, "Temperature tau of the softmax over similarities (NT-Xent, InfoNCE, SupCon).", valid=positive()
    )


def target_momentum(default: float) -> typing.Any:
    return setting(
        default,
        "Momentum m of the momentum network (MoCo's key encoder, BYOL's target), w <- m w + (1 - m) w_online; "
        "BYOL's rises from m to 1 over training.",
        valid=within(0, 1),
    )


def queue_size(default: int) -> typing.Any:
    return setting(default, "Keys kept from recent batches: MoCo's negatives, NNCLR's support set.", valid=at_least(1))


def projection_layers(default: int) -> typing.Any:
    return setting(
        default, "Dense layers of the projection head (2: SimCLR v1, 3: v2).", valid=at_least(1), structural=True
    )


def projection_dim(default: int | None, unset: str = "unset") -> typing.Any:
    return setting(default, "Width of the projection z.", valid=at_least(1), structural=True, unset=unset)


def projection_hidden_dim(default: int | None, unset: str = "as wide as h") -> typing.Any:
    return setting(
        default, "Width of the projection head's hidden layers.", valid=at_least(1), structural=True, unset=unset
    )


def predictor_hidden_dim(default: int) -> typing.Any:
    return setting(default, "Width of the predictor's hidden layer.", valid=at_least(1), structural=True)


def asymmetric_views(default: bool) -> typing.Any:
    return setting(
        default,
        "Draw the two views differently, as BYOL does (blur 1.0 / 0.1, solarize 0 / 0.2), and jitter their colour "
        "as the method's reference (0.4, 0.4, 0.2, 0.1 at strength 0.5).",
        structural=True,
    )


def color_jitter(default: str) -> typing.Any:
    return setting(
        default,
        "How the asymmetric views jitter colour: torchvision, the ColorJitter Barlow Twins, VICReg, solo-learn and "
        "lightly call (brightness multiplied); byol, BYOL's augmentations.py (brightness added).",
        choices=ASYMMETRIC_JITTERS,
        structural=True,
    )


def head_output_bias(default: bool) -> typing.Any:
    return setting(
        default,
        "The heads' last Dense layer has a bias (the papers' references: none; lightly's BYOL and solo-learn's "
        "Barlow Twins and VICReg heads: one).",
        structural=True,
    )


def momentum_schedule(default: str) -> typing.Any:
    return setting(
        default,
        "The momentum network's momentum over training: cosine, from target_momentum to 1 (BYOL's, MoCo v3's "
        "--moco-m-cos); constant, target_momentum throughout (lightly's BYOL benchmark).",
        choices=MOMENTUM_SCHEDULES,
    )
