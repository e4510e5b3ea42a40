"""Projection head g(.): representation h -> projection z, where the loss is applied; and
the prediction head q(.) that BYOL and SimSiam put on top of it."""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="contrastive_tf")
class ProjectionHead(keras.layers.Layer):
    """SimCLR's MLP head: v1 is Dense-ReLU-Dense (2 layers), v2 adds BN and a third layer.

    Hidden layers are as wide as h (`hidden_dim=None`), the last layer has `output_dim`
    units. In v2 every layer is followed by (synchronised) batch norm, the last one
    without a learned shift, as in SimCLRv2; SimCLRv2 fine-tunes from the first layer,
    which `layers_upto(1)` gives. A Dense followed by BN has no bias (the BN's mean
    subtraction would cancel it). The BN uses the encoder's momentum 0.9 and epsilon 1e-5,
    as SimCLR's `tf2/model.py` and `resnet.py` do. BYOL's MLPs normalise the hidden layers
    only and end in a Dense without bias (`output_norm=False, output_bias=False`);
    SimSiam's projector ends in a BN with neither shift nor scale (`output_scale=False`);
    lightly's SimCLRProjectionHead normalises every layer, the last with a shift
    (`batch_norm=True, output_center=True`).

    Args:
        num_layers: 2 (SimCLR v1 style) or more (3 in SimCLR v2).
        output_dim: size of z; 128 in the paper.
        hidden_dim: width of the hidden layers; None uses the width of h.
        batch_norm: whether to add BN after the hidden layers (v2); defaults to num_layers >= 3.
        output_norm: whether BN also follows the last layer; defaults to `batch_norm`.
        output_scale: whether that last BN learns a scale (SimCLRv2's does, SimSiam's not).
        output_center: whether that last BN learns a shift (SimCLRv2's not, lightly's does).
        output_bias: whether the last Dense has a bias when no BN follows it.

    Example:
        >>> head = ProjectionHead(num_layers=3, output_dim=128)
        >>> head(keras.ops.zeros([4, 512])).shape
        (4, 128)
    """

    def __init__(
        self,
        num_layers: int = 2,
        output_dim: int = 128,
        hidden_dim: int | None = None,
        batch_norm: bool | None = None,
        output_norm: bool | None = None,
        output_scale: bool = True,
        output_bias: bool = True,
        output_center: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"`num_layers` must be >= 1; received num_layers={num_layers}.")
        if output_dim < 1:
            raise ValueError(f"`output_dim` must be >= 1; received output_dim={output_dim}.")
        if hidden_dim is not None and hidden_dim < 1:
            raise ValueError(f"`hidden_dim` must be >= 1 or None; received hidden_dim={hidden_dim}.")
        self.num_layers, self.output_dim, self.hidden_dim = num_layers, output_dim, hidden_dim
        self.batch_norm = num_layers >= 3 if batch_norm is None else batch_norm
        self.output_norm = self.batch_norm if output_norm is None else output_norm
        self.output_scale, self.output_bias, self.output_center = output_scale, output_bias, output_center
        self.dense_layers: list[layers.Layer] = []
        # Only the normalised layers have one, in order; `layers_upto` pairs them up.
        self.norm_layers: list[layers.Layer] = []

    def build(self, input_shape):
        hidden = self.hidden_dim or input_shape[-1]
        shape = tuple(input_shape)
        for index in range(self.num_layers):
            last = index == self.num_layers - 1
            normalised = self._normalised(index)
            dense = layers.Dense(
                self.output_dim if last else hidden,
                use_bias=not normalised and (self.output_bias or not last),
                name=f"dense_{index}",
                dtype=self.dtype_policy,
            )
            dense.build(shape)
            shape = dense.compute_output_shape(shape)
            self.dense_layers.append(dense)
            if normalised:
                norm = layers.BatchNormalization(
                    synchronized=True,
                    momentum=0.9,
                    epsilon=1e-5,
                    center=self.output_center or not last,
                    scale=self.output_scale or not last,
                    name=f"bn_{index}",
                    dtype=self.dtype_policy,
                )
                norm.build(shape)
                self.norm_layers.append(norm)

    def call(self, h, training=False):
        return self.layers_upto(self.num_layers, h, training)

    def layers_upto(self, count: int, h, training=False):
        """Output of the first `count` layers (with their BN and ReLU) on h."""
        x, norms = h, iter(self.norm_layers)
        for index in range(count):
            x = self.dense_layers[index](x)
            if self._normalised(index):
                x = next(norms)(x, training=training)
            if index < self.num_layers - 1:
                x = keras.ops.relu(x)
        return x

    def layers_after(self, count: int) -> list[layers.Layer]:
        """The dense and batch-norm layers that `layers_upto(count, ...)` leaves unused."""
        used_norms = sum(self._normalised(index) for index in range(count))
        return self.dense_layers[count:] + self.norm_layers[used_norms:]

    def _normalised(self, index: int) -> bool:
        return self.output_norm if index == self.num_layers - 1 else self.batch_norm

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "output_dim": self.output_dim,
            "hidden_dim": self.hidden_dim,
            "batch_norm": self.batch_norm,
            "output_norm": self.output_norm,
            "output_scale": self.output_scale,
            "output_bias": self.output_bias,
            "output_center": self.output_center,
        }


def prediction_head(output_dim: int, hidden_dim: int | None = None, output_bias: bool = True) -> ProjectionHead:
    """BYOL's and SimSiam's predictor q: Dense-BN-ReLU-Dense from z to z's size, so that
    the online network predicts the other view's (target) projection. BYOL's ends without
    a bias (`output_bias=False`), SimSiam's with one."""
    return ProjectionHead(
        2, output_dim, hidden_dim, batch_norm=True, output_norm=False, output_bias=output_bias, name="predictor"
    )
