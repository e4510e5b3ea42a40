"""Optimisers and learning-rate schedules for contrastive pretraining."""

from __future__ import annotations

import math
from collections.abc import Iterable

import keras
from keras import ops

from contrastive_tf.errors import UsageError

OPTIMIZERS = ("lars", "sgd", "adam", "adamw")
LR_SCALINGS = ("linear", "sqrt", "none")
# Whose LARS update rule: google-research/simclr's or vturrisi/solo-learn's (see `LARS`).
LARS_VARIANTS = ("simclr", "solo_learn")


class _CoupledWeightDecayMomentum(keras.optimizers.Optimizer):
    """Momentum SGD whose weight decay is coupled L2: wd * w joins the gradient before the
    momentum, as in SimCLR's LARS and torch's SGD. Keras' own `weight_decay` is left unset,
    as Keras would otherwise shrink w a second time, decoupled, before the step. Variables
    passed to `exclude_from_weight_decay` get no decay. `_get_variable_index` and
    `_use_weight_decay` are the hooks Keras' own optimizers call; none is public."""

    def __init__(self, learning_rate, momentum: float, weight_decay: float, name: str, **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1); received momentum={momentum}.")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0; received weight_decay={weight_decay}.")
        self.momentum, self.l2_weight_decay = momentum, weight_decay

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.velocities = self.add_optimizer_variables(var_list, "velocity")

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "weight_decay": self.l2_weight_decay}


@keras.saving.register_keras_serializable(package="contrastive_tf")
class LARS(_CoupledWeightDecayMomentum):
    """LARS (You et al. 2017): momentum where each weight matrix's step is scaled by its
    trust ratio, in one of two sources' rules. `variant="simclr"` (google-research/simclr,
    tf2/lars_optimizer.py) scales the learning rate before it joins the velocity, so past
    steps keep the rate they were taken with:

        g <- g + wd * w;  trust = eta * ||w|| / ||g||  (1 if either norm is 0)
        v <- m * v + lr * trust * g;  w <- w - v   (Nesterov: w <- w - (m * v + lr * trust * g))

    `variant="solo_learn"` (vturrisi/solo-learn, solo/utils/lars.py) measures the raw
    gradient, leaves a matrix whose weights or gradient are all zero undecayed, and keeps
    torch's momentum, where the current learning rate scales the whole velocity:

        trust = eta * ||w|| / (||g|| + wd * ||w|| + 1e-8);  g <- trust * (g + wd * w)
        (g unchanged if either norm is 0);  v <- m * v + g;  w <- w - lr * v
        (Nesterov: w <- w - lr * (m * v + g))

    `clip_lr` (solo-learn's, from NVIDIA's LARC) replaces trust by min(trust / lr, 1), so a
    matrix's rate is eta * ||w|| / (...) capped at lr rather than lr times it.

    One-dimensional variables (batch-norm scales and shifts, biases) get neither weight
    decay nor the trust ratio, as in SimCLR and solo-learn's `exclude_bias_n_norm`; deciding
    by rank, not by variable name, keeps this right for any encoder. Variables passed to
    `exclude_from_weight_decay` get neither either (SimCLR's exclusion list serves both, as
    for its supervised head).

    Args:
        learning_rate: float or schedule.
        momentum: heavy-ball momentum, in [0, 1).
        weight_decay: L2 coefficient, added to the gradient of weight matrices.
        trust_coefficient: eta in the LARS trust ratio, > 0.
        nesterov: use Nesterov momentum.
        clip_lr: cap each matrix's rate at the learning rate, as solo-learn's `clip_lr`.
        variant: whose update rule, one of `LARS_VARIANTS`.

    Example:
        >>> optimizer = LARS(warmup_cosine(4.8, total_steps=10_000, warmup_steps=500))
        >>> exclude_vectors_from_weight_decay(optimizer, model.trainable_variables, plain=probe.trainable_variables)
    """

    def __init__(
        self,
        learning_rate=0.3,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        nesterov: bool = False,
        clip_lr: bool = False,
        variant: str = "simclr",
        name: str = "lars",
        **kwargs,
    ):
        super().__init__(learning_rate, momentum, weight_decay, name, **kwargs)
        if trust_coefficient <= 0:
            raise ValueError(f"`trust_coefficient` must be > 0; received trust_coefficient={trust_coefficient}.")
        if variant not in LARS_VARIANTS:
            raise ValueError(f"`variant` must be one of {LARS_VARIANTS}; received variant={variant!r}.")
        self.trust_coefficient, self.nesterov = trust_coefficient, nesterov
        self.clip_lr, self.variant = clip_lr, variant

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        adapted = len(variable.shape) > 1 and self._use_weight_decay(variable)
        if self.variant == "solo_learn":
            if adapted:
                w_norm, g_norm = ops.norm(ops.reshape(variable, [-1])), ops.norm(ops.reshape(gradient, [-1]))
                trust = self._clipped(
                    self.trust_coefficient * w_norm / (g_norm + self.l2_weight_decay * w_norm + 1e-8), learning_rate
                )
                decayed = trust * (gradient + self.l2_weight_decay * variable)
                gradient = ops.where((w_norm > 0) & (g_norm > 0), decayed, gradient)
            next_velocity = self.momentum * velocity + gradient
            self.assign(velocity, next_velocity)
            update = self.momentum * next_velocity + gradient if self.nesterov else next_velocity
            self.assign_sub(variable, learning_rate * update)
            return
        if adapted:
            gradient = gradient + self.l2_weight_decay * variable
            w_norm, g_norm = ops.norm(ops.reshape(variable, [-1])), ops.norm(ops.reshape(gradient, [-1]))
            trust = self._clipped(self.trust_coefficient * w_norm / g_norm, learning_rate)
            learning_rate = learning_rate * ops.where((w_norm > 0) & (g_norm > 0), trust, ops.ones_like(trust))
        step = learning_rate * gradient
        next_velocity = self.momentum * velocity + step
        self.assign(velocity, next_velocity)
        self.assign_sub(variable, self.momentum * next_velocity + step if self.nesterov else next_velocity)

    def _clipped(self, trust, learning_rate):
        # At a learning rate of 0, trust / 0 is inf and the cap gives 1, as in torch.
        return ops.minimum(trust / learning_rate, 1.0) if self.clip_lr else trust

    def get_config(self):
        return {
            **super().get_config(),
            "trust_coefficient": self.trust_coefficient,
            "nesterov": self.nesterov,
            "clip_lr": self.clip_lr,
            "variant": self.variant,
        }


@keras.saving.register_keras_serializable(package="contrastive_tf")
class CoupledSGD(_CoupledWeightDecayMomentum):
    """SGD with momentum and L2 weight decay added to the gradient, as torch's SGD (which
    MoCo, SimSiam, lightly and solo-learn use); Keras' SGD decays weights decoupled instead.

        g <- g + wd * w;  v <- m * v + g;  w <- w - lr * v

    This is torch's momentum convention: the current learning rate scales the whole
    velocity. Keras' SGD keeps v' = m * v' - lr * g, w <- w + v' instead, the same steps
    while the learning rate is constant (v' = -lr * v), not under a schedule.

    Args:
        learning_rate: float or schedule.
        momentum: heavy-ball momentum, in [0, 1).
        weight_decay: L2 coefficient, added to the gradient of every variable not passed
            to `exclude_from_weight_decay` (see `exclude_vectors_from_weight_decay`).
    """

    def __init__(
        self,
        learning_rate=0.03,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        name: str = "coupled_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate, momentum, weight_decay, name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self.velocities[self._get_variable_index(variable)]
        if self._use_weight_decay(variable):
            gradient = gradient + self.l2_weight_decay * variable
        next_velocity = self.momentum * velocity + gradient
        self.assign(velocity, next_velocity)
        self.assign_sub(variable, learning_rate * next_velocity)


def scale_learning_rate(base: float, batch_size: int, scaling: str = "linear") -> float:
    """SimCLR's learning-rate scaling: base * B / 256 ("linear"), base * sqrt(B) ("sqrt")."""
    if scaling == "linear":
        return base * batch_size / 256
    if scaling == "sqrt":
        return base * math.sqrt(batch_size)
    if scaling == "none":
        return base
    raise UsageError(f"unknown lr_scaling {scaling!r}; choose one of {', '.join(LR_SCALINGS)}")


LR_SCHEDULE_INTERVALS = ("step", "epoch")


def warmup_cosine(
    peak: float,
    total_steps: int,
    warmup_steps: int,
    start: float = 0.0,
    steps_per_epoch: int | None = None,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup from `start` to `peak` over `warmup_steps`, then cosine decay to 0.

    `start` is solo-learn's `warmup_start_lr` (3e-5 in its recipes; its scheduler reaches the
    peak one step sooner). With `steps_per_epoch`, the rate changes once an epoch, as a torch
    scheduler stepped per epoch (lightly's `CosineAnnealingLR(optimizer, max_epochs)`)."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=start,
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )
    return EpochWise(schedule, steps_per_epoch) if steps_per_epoch else schedule


@keras.saving.register_keras_serializable(package="contrastive_tf")
class EpochWise(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` held for each epoch at its value at the epoch's first step.

    Args:
        schedule: a schedule over steps.
        steps_per_epoch: steps in an epoch, >= 1.
    """

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule, steps_per_epoch: int):
        if steps_per_epoch < 1:
            raise ValueError(f"`steps_per_epoch` must be >= 1; received steps_per_epoch={steps_per_epoch}.")
        self.schedule, self.steps_per_epoch = schedule, steps_per_epoch

    def __call__(self, step):
        return self.schedule((step // self.steps_per_epoch) * self.steps_per_epoch)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "steps_per_epoch": self.steps_per_epoch}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["steps_per_epoch"])


def build_optimizer(
    name: str, learning_rate, weight_decay: float = 1e-6, momentum: float = 0.9, **lars_settings: object
) -> keras.optimizers.Optimizer:
    """One of `OPTIMIZERS`. LARS and SGD add L2 weight decay to the gradient (SimCLR's and
    torch's convention), AdamW decays decoupled, Adam not at all. `lars_settings` are LARS'
    own arguments (trust_coefficient, clip_lr, variant); the others take none. Call
    `exclude_vectors_from_weight_decay` once the model is built."""
    if name == "lars":
        return LARS(learning_rate, momentum=momentum, weight_decay=weight_decay, **lars_settings)
    if lars_settings and name in OPTIMIZERS:
        raise UsageError(f"{name} does not use {', '.join(lars_settings)}; those are LARS' settings")
    if name == "sgd":
        return CoupledSGD(learning_rate, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    raise UsageError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def exclude_vectors_from_weight_decay(
    optimizer: keras.optimizers.Optimizer, variables: Iterable, plain: Iterable = (), decay_vectors: bool = False
) -> None:
    """Keeps weight decay off 1-D variables (batch norm, biases; unless `decay_vectors`, as
    torch's SGD over all parameters in lightly's and solo-learn's SupCon runs) and off
    `plain`, the variables that should take plain steps: under LARS, `plain` also gets no
    trust ratio (and LARS leaves 1-D variables undecayed whatever `decay_vectors` says).
    Pass the online probe's variables as `plain`, as SimCLR does its supervised head: its
    step should not depend on the encoder's contrastive settings. Call once, before the
    first step (each call replaces the last one's exclusions)."""
    excluded = [v for v in variables if len(v.shape) < 2 and not decay_vectors] + list(plain)
    optimizer.exclude_from_weight_decay(var_list=excluded)
