"""Optimisers and learning-rate schedules for contrastive pretraining."""

from __future__ import annotations

import math

import keras
from keras import ops

from contrastive_tf.errors import UsageError

OPTIMIZERS = ("lars", "sgd", "adam", "adamw")
LR_SCALINGS = ("linear", "sqrt", "none")


@keras.saving.register_keras_serializable(package="contrastive_tf")
class LARS(keras.optimizers.Optimizer):
    """LARS (You et al. 2017) as used by SimCLR: SGD with momentum, where each weight
    matrix's step is scaled by trust_coefficient * ||w|| / ||g + wd * w||.

    One-dimensional variables (batch-norm scales and shifts, biases) get neither weight
    decay nor the trust ratio, as in SimCLR; deciding by rank, not by variable name,
    keeps this right for any encoder.

    Args:
        learning_rate: float or schedule.
        momentum: heavy-ball momentum.
        weight_decay: L2 coefficient, added to the gradient of weight matrices.
        trust_coefficient: eta in the LARS trust ratio.
        nesterov: use Nesterov momentum.
    """

    def __init__(
        self,
        learning_rate=0.3,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        nesterov: bool = False,
        name: str = "lars",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1); received momentum={momentum}.")
        if weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(
                f"`weight_decay` must be >= 0 and `trust_coefficient` > 0; received "
                f"weight_decay={weight_decay}, trust_coefficient={trust_coefficient}."
            )
        self.momentum, self.lars_weight_decay = momentum, weight_decay
        self.trust_coefficient, self.nesterov = trust_coefficient, nesterov

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.velocities = self.add_optimizer_variables(var_list, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        if len(variable.shape) > 1:
            gradient = gradient + self.lars_weight_decay * variable
            w_norm, g_norm = ops.norm(ops.reshape(variable, [-1])), ops.norm(ops.reshape(gradient, [-1]))
            trust = ops.where(
                (w_norm > 0) & (g_norm > 0), self.trust_coefficient * w_norm / g_norm, ops.ones_like(w_norm)
            )
            learning_rate = learning_rate * trust
        self.assign(velocity, self.momentum * velocity + gradient)
        step = self.momentum * velocity + gradient if self.nesterov else velocity
        self.assign_sub(variable, learning_rate * step)

    def get_config(self):
        return {
            **super().get_config(),
            "momentum": self.momentum,
            "weight_decay": self.lars_weight_decay,
            "trust_coefficient": self.trust_coefficient,
            "nesterov": self.nesterov,
        }


def scale_learning_rate(base: float, batch_size: int, scaling: str = "linear") -> float:
    """SimCLR's learning-rate scaling: base * B / 256 ("linear"), base * sqrt(B) ("sqrt")."""
    if scaling == "linear":
        return base * batch_size / 256
    if scaling == "sqrt":
        return base * math.sqrt(batch_size)
    if scaling == "none":
        return base
    raise UsageError(f"unknown lr_scaling {scaling!r}; choose one of {', '.join(LR_SCALINGS)}")


def warmup_cosine(peak: float, total_steps: int, warmup_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup from 0 to `peak` over `warmup_steps`, then cosine decay to 0."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )


def build_optimizer(
    name: str, learning_rate, weight_decay: float = 1e-6, momentum: float = 0.9
) -> keras.optimizers.Optimizer:
    """One of `OPTIMIZERS`. Adam has no weight decay; LARS skips 1-D variables itself,
    for SGD and AdamW call `exclude_vectors_from_weight_decay` once the model is built."""
    if name == "lars":
        return LARS(learning_rate, momentum=momentum, weight_decay=weight_decay)
    if name == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=momentum, weight_decay=weight_decay or None)
    elif name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    else:
        raise UsageError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return optimizer


def exclude_vectors_from_weight_decay(optimizer: keras.optimizers.Optimizer, variables) -> None:
    """Keeps weight decay off 1-D variables (BN, biases); call before the first step."""
    if not isinstance(optimizer, LARS) and optimizer.weight_decay:
        optimizer.exclude_from_weight_decay(var_list=[v for v in variables if len(v.shape) < 2])
