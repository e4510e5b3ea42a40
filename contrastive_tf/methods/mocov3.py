"""MoCo v3 (Chen, Xie & He 2021): a query network (encoder, projector, predictor) predicts
the keys of a momentum copy of its encoder and projector, both ways round, against the
other images of the global batch; no queue."""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from contrastive_tf.heads import ProjectionHead
from contrastive_tf.losses import mocov3_loss
from contrastive_tf.methods import settings
from contrastive_tf.methods.base import asymmetric_augmenters
from contrastive_tf.methods.byol import BYOL
from contrastive_tf.methods.momentum import scheduled_momentum
from contrastive_tf.settings import setting


@dataclasses.dataclass(frozen=True)
class MoCoV3Settings(settings.MethodSettings):
    """MoCo v3's settings for ViTs (facebookresearch/moco-v3 `CONFIG.md`, `moco/builder.py`
    `MoCo_ViT`): temperature 0.2 (`--moco-t=.2`), key momentum 0.99 rising to 1 along a
    cosine (`--moco-m-cos`), a 3-layer projector 4096 wide to a 256-d z and a 2-layer
    predictor 4096 wide, every layer followed by batch norm (the last without scale or
    shift); BYOL's two views. Its ResNet-50 runs use a 2-layer projector
    (`--projection_layers=2`), a predictor without the last batch norm
    (`--predictor_output_norm=false`) and a temperature of 1."""

    method = "mocov3"
    temperature: float = settings.temperature(0.2)
    target_momentum: float = settings.target_momentum(0.99)
    momentum_schedule: str = settings.momentum_schedule("cosine")
    projection_layers: int = settings.projection_layers(3)
    projection_dim: int = settings.projection_dim(256)
    projection_hidden_dim: int | None = settings.projection_hidden_dim(4096)
    predictor_hidden_dim: int = settings.predictor_hidden_dim(4096)
    predictor_output_norm: bool = setting(
        True,
        "MoCo v3's predictor ends in batch norm without scale or shift, as its ViT runs (`last_bn=True`); false: "
        "in a Dense, as its ResNet runs.",
        structural=True,
    )
    asymmetric_views: bool = settings.asymmetric_views(True)
    color_jitter: str = settings.color_jitter("torchvision")


def mocov3_mlp(
    num_layers: int, output_dim: int, hidden_dim: int | None, last_norm: bool = True, name: str | None = None
) -> ProjectionHead:
    """MoCo v3's `_build_mlp`: Dense layers without bias, each hidden one followed by batch
    norm and ReLU, the last by batch norm without scale or shift if `last_norm` (else it is a
    Dense without bias)."""
    return ProjectionHead(
        num_layers,
        output_dim,
        hidden_dim,
        batch_norm=True,
        output_norm=last_norm,
        output_scale=False,
        output_bias=False,
        name=name,
    )


@keras.saving.register_keras_serializable(package="contrastive_tf")
class MoCoV3(BYOL):
    """MoCo v3: loss = ctr(q1, k2) + ctr(q2, k1), with q = p(g(f(view))) the query network's
    prediction, k = g'(f'(view)) the momentum network's key and ctr `losses.mocov3_loss`
    (the other images' keys of the global batch as negatives, scaled by 2 tau).

    It follows facebookresearch/moco-v3 (`moco/builder.py`, `MoCo.forward`;
    `main_moco.py`, `train`): each view through the networks on its own, and the momentum
    network (MoCo's key encoder; `target_network` here, as BYOL's, whose networks it shares)
    moved towards the online one with the step's scheduled momentum before it makes the
    keys, so the keys of step t come from the online weights of step t.

    Args:
        encoder, projection_head, augmenter: as in `SimCLR` (see `mocov3_mlp`).
        predictor: p, z -> z (see `mocov3_mlp`).
        num_classes: classes of the online probe; None turns it off.
        num_views: 2.
        second_augmenter: draws the second view; None draws both with `augmenter`.
        total_steps: the training length, over which the cosine momentum schedule runs.
        temperature, target_momentum, momentum_schedule: see `MoCoV3Settings`.
    """

    Settings = MoCoV3Settings
    renamed_settings = {}

    @classmethod
    def from_settings(cls, encoder, augmenter, settings: MoCoV3Settings, **common) -> MoCoV3:
        head = mocov3_mlp(settings.projection_layers, settings.projection_dim, settings.projection_hidden_dim)
        predictor = mocov3_mlp(
            2, settings.projection_dim, settings.predictor_hidden_dim, settings.predictor_output_norm, name="predictor"
        )
        augmenter, second = asymmetric_augmenters(augmenter, settings.asymmetric_views, settings.color_jitter)
        return cls(encoder, head, predictor, augmenter, second_augmenter=second, **common, **settings.model_arguments())

    def train_step(self, data):
        views, labels = self.views(data)
        momentum = scheduled_momentum(
            self.optimizer.iterations, self.total_steps, self.target_momentum, self.momentum_schedule
        )
        self.target_network.update(self.encoder, self.projection_head, momentum)
        keys = [self.target_network(view, training=True) for view in views]
        with tf.GradientTape() as tape:
            h = [self.encoder(view, training=True) for view in views]
            queries = [self.predictor(self.projection_head(x, training=True), training=True) for x in h]
            loss = mocov3_loss(queries[0], keys[1], self.temperature) + mocov3_loss(
                queries[1], keys[0], self.temperature
            )
            total = loss + self.probe_loss(h[0], labels)
        self.minimize(tape, total)
        self.loss_tracker.update_state(loss)
        return self._logs()
