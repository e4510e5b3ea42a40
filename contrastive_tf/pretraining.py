"""One pretraining run, end to end: data -> model -> fit -> probe -> export, for any of
the methods (SimCLR by default).

`pretrain(PretrainConfig(...))` is what `python -m experiments.pretrain` runs, and what
a notebook calls. Rerunning with the same `model_dir` resumes from the last checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import pathlib

import keras
import tensorflow as tf

from contrastive_tf import distribute
from contrastive_tf.augmentation import SimCLRAugment
from contrastive_tf.checkpoints import TrainingCheckpoint, latest_step, restore, write_atomically
from contrastive_tf.data import ImageData, load_data, pretraining_batches
from contrastive_tf.encoders import build_encoder
from contrastive_tf.errors import UsageError
from contrastive_tf.evaluation import ProbeResult, extract_features, linear_probe, probe_encoder
from contrastive_tf.export import check_export_target, export_encoder
from contrastive_tf.knn import KnnMonitor, knn_accuracy
from contrastive_tf.methods import check_method, contrastive_model
from contrastive_tf.model import ContrastiveModel
from contrastive_tf.optimizers import (
    build_optimizer,
    exclude_vectors_from_weight_decay,
    scale_learning_rate,
    warmup_cosine,
)
from contrastive_tf.plots import plot_training_curves, plot_view_pairs
from contrastive_tf.precision import global_precision, resolve_jit_compile, resolve_precision
from contrastive_tf.reports import provenance

# The whole trained model in a run's model_dir, which evaluations load.
MODEL_FILE = "simclr.keras"


@dataclasses.dataclass
class PretrainConfig:
    """Everything a pretraining run needs.

    The defaults pretrain the small CNN on the embedded MNIST sample in about two
    minutes on two CPU cores, with Adam and a crop of at least 20% of the digit (a
    smaller crop can cut a digit down to a stroke). For the paper's recipe on CIFAR-10
    use optimizer="lars", learning_rate=1.0, lr_scaling="linear", crop_scale_min=0.08,
    temperature=0.5 and a ResNet.
    """

    # Data.
    dataset: str = "sample"
    data_dir: str | None = None
    image_size: int | None = None
    # Training.
    strategy: str = "auto"
    tpu_address: str | None = None
    batch_size: int = 256
    epochs: int = 6
    seed: int = 0
    # Method and model.
    method: str = "simclr"
    num_views: int = 2
    encoder: str = "auto"
    width: float = 1.0
    projection_layers: int = 2
    projection_dim: int = 128
    # Loss and optimisation.
    temperature: float = 0.2
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    lr_scaling: str = "none"
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-6
    # MoCo's key network and BYOL's target network (None: 0.99 for MoCo, 0.996 for BYOL).
    target_momentum: float | None = None
    queue_size: int = 4096
    # Augmentation.
    color_jitter_strength: float = 0.5
    blur: bool | None = None
    crop_scale_min: float = 0.2
    # Speed: "auto" picks the fastest correct setting for the hardware (see `precision`).
    precision: str = "auto"
    jit_compile: str | bool = "auto"
    # Outputs.
    model_dir: str = "runs/simclr"
    export_dir: str | None = None
    overwrite: bool = False
    checkpoint_every_steps: int | None = None
    # Log the kNN accuracy of a held-out split every this many epochs (0: never).
    knn_every_epochs: int = 1
    verbose: int | str = "auto"

    def validate(self) -> None:
        """Raises UsageError naming the first setting that cannot work. (`pretrain`
        checks precision and jit_compile as it resolves them for the hardware.)"""
        check_method(self.method, self.num_views)
        checks = [
            (
                self.target_momentum is None or 0 <= self.target_momentum <= 1,
                f"target_momentum must be in [0, 1], got {self.target_momentum}",
            ),
            (
                self.method != "moco" or self.batch_size >= 8,
                f"--method=moco needs batch_size >= 8 (4 batch-norm groups of 2), got {self.batch_size}",
            ),
            (
                self.method != "moco" or self.queue_size >= self.batch_size,
                f"queue_size ({self.queue_size}) must be >= batch_size ({self.batch_size}): "
                "every step enqueues a batch of keys",
            ),
            (self.batch_size >= 2, f"batch_size must be >= 2 (NT-Xent needs negatives), got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.width > 0, f"width must be > 0, got {self.width}"),
            (self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.projection_layers >= 1, f"projection_layers must be >= 1, got {self.projection_layers}"),
            (self.projection_dim >= 1, f"projection_dim must be >= 1, got {self.projection_dim}"),
            (self.color_jitter_strength >= 0, f"color_jitter_strength must be >= 0, got {self.color_jitter_strength}"),
            (0 < self.crop_scale_min <= 1, f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}"),
            (
                self.image_size is None or self.image_size >= 8,
                f"image_size must be >= 8 for the crop, got {self.image_size}",
            ),
            (self.knn_every_epochs >= 0, f"knn_every_epochs must be >= 0, got {self.knn_every_epochs}"),
            (
                self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
                f"checkpoint_every_steps must be >= 1, got {self.checkpoint_every_steps}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)


@dataclasses.dataclass
class PretrainResult:
    model: ContrastiveModel
    history: dict[str, list[float]]
    export_path: pathlib.Path | None
    probe: ProbeResult | None
    random_probe: ProbeResult | None
    figures: list[pathlib.Path]
    knn_top1: float | None = None


def encoder_name(config: PretrainConfig, image_shape: tuple[int, int, int]) -> str:
    """The configured encoder; "auto" is small_cnn for digit-sized images, else ResNet-18."""
    if config.encoder != "auto":
        return config.encoder
    return "small_cnn" if max(image_shape[:2]) <= 28 else "resnet18"


def build_model(
    config: PretrainConfig, data: ImageData, steps_per_epoch: int, jit_compile: bool = False
) -> ContrastiveModel:
    """The compiled model of `config.method`; call inside the strategy's scope, under the
    dtype policy it should train in."""
    labelled = data.unlabeled is None and bool(data.num_classes)
    if config.method == "supcon" and not labelled:
        raise UsageError(
            f"--method=supcon learns from labels, and {data.name} has unlabelled training images; "
            "use a labelled data set or another --method"
        )
    model = contrastive_model(
        config.method,
        build_encoder(encoder_name(config, data.image_shape), data.image_shape, config.width),
        SimCLRAugment(
            color_jitter_strength=config.color_jitter_strength,
            blur=config.blur,
            crop_scale=(config.crop_scale_min, 1.0),
            seed=config.seed,
        ),
        projection_layers=config.projection_layers,
        projection_dim=config.projection_dim,
        temperature=config.temperature,
        momentum=config.target_momentum,
        queue_size=config.queue_size,
        total_steps=config.epochs * steps_per_epoch,
        num_views=config.num_views,
        num_classes=data.num_classes if labelled else None,
    )
    model.build((None, *data.image_shape))
    peak = scale_learning_rate(config.learning_rate, config.batch_size, config.lr_scaling)
    schedule = warmup_cosine(peak, config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch))
    optimizer = build_optimizer(config.optimizer, schedule, config.weight_decay)
    exclude_vectors_from_weight_decay(optimizer, model.trainable_variables)
    model.compile(optimizer=optimizer, jit_compile=jit_compile)
    # Now, not at the first step: under multi_worker every worker must create the same
    # variables in the same order, whether or not it has a checkpoint to restore.
    optimizer.build(model.trainable_variables)
    return model


def _read_history(path: pathlib.Path) -> dict[str, list[float]]:
    """The per-epoch metrics of the whole run, across resumes, from the CSV log."""
    if not path.exists():
        return {}
    with open(path, newline="") as file:
        # One row per epoch, the latest where a resumed run repeated an epoch.
        rows = list({row["epoch"]: row for row in csv.DictReader(file)}.values())
    # Keras writes "NA" for metrics it did not compute (no validation data).
    names = [name for name in (rows[0] if rows else {}) if name != "epoch" and rows[0][name] != "NA"]
    return {name: [float(row[name]) if row[name] != "NA" else math.nan for row in rows] for name in names}


def pretrain(config: PretrainConfig) -> PretrainResult:
    """Runs (or resumes) pretraining, then the linear probe, figures and export.

    Writes into `config.model_dir`: `checkpoints/` (resume state), `logs/` (TensorBoard),
    `history.csv`, `simclr.keras` (the whole model), `views.png` and `training_curves.png`.
    The encoder is exported to `config.export_dir` (default `model_dir/export`).
    """
    config.validate()
    strategy = distribute.build_strategy(config.strategy, config.tpu_address)
    distribute.check_batch_size(config.batch_size, strategy)
    precision = resolve_precision(config.precision, strategy)
    jit_compile = resolve_jit_compile(config.jit_compile, strategy)
    with global_precision(precision):
        return _pretrain(config, strategy, precision, jit_compile)


def _pretrain(config: PretrainConfig, strategy: tf.distribute.Strategy, precision: str, jit_compile: bool):
    keras.utils.set_random_seed(config.seed)
    data = load_data(config.dataset, config.data_dir, config.image_size)

    def batches_from(step: int) -> tf.data.Dataset:
        # A new dataset each time: a second iterator of the same one would shuffle anew.
        return pretraining_batches(data, config.batch_size, seed=config.seed).repeat().skip(step)

    batches_from(0)  # fails early when the data holds less than one batch
    steps_per_epoch = data.pretrain.num_examples // config.batch_size
    model_dir = pathlib.Path(config.model_dir).expanduser()
    # Refuse an existing export before training, not after it.
    export_dir = check_export_target(config.export_dir or model_dir / "export", config.overwrite)
    model_dir.mkdir(parents=True, exist_ok=True)

    # Every worker resumes from the chief's checkpoints; only the chief writes files.
    is_chief = distribute.is_chief(strategy)
    checkpoint_dir = model_dir / "checkpoints"
    with strategy.scope():
        model = build_model(config, data, steps_per_epoch, jit_compile)
        # All workers restore or none do: loading creates variables, each a collective.
        step = distribute.agree_across_workers(strategy, latest_step(checkpoint_dir), "checkpoints")
        step = restore(model, checkpoint_dir) if step else 0
    if config.verbose:
        resuming = f", resuming from the checkpoint at step {step}" if step else ""
        print(f"training {model.encoder.name} in {precision}, XLA {'on' if jit_compile else 'off'}{resuming}")
    checkpoints = TrainingCheckpoint(checkpoint_dir if is_chief else None, config.checkpoint_every_steps)
    callbacks = [checkpoints]
    if is_chief:
        # The kNN monitor stays off under multi_worker, where it has not been tested.
        monitor = data.test is not None and data.num_classes and config.knn_every_epochs
        monitor = monitor and not distribute.is_multi_worker(strategy)
        callbacks = [
            # First, so that the logs after it include its accuracy.
            *([KnnMonitor(data.train, data.test, data.num_classes, config.knn_every_epochs)] if monitor else []),
            # The CSV row of an epoch is written before its checkpoint: a kill in between
            # repeats that epoch on resume, and `_read_history` keeps the repeat's row.
            keras.callbacks.CSVLogger(str(model_dir / "history.csv"), append=True),
            checkpoints,
            keras.callbacks.TensorBoard(str(model_dir / "logs"), update_freq="epoch"),
        ]
    epoch, done = divmod(step, steps_per_epoch)
    # One iterator per `fit`, not per epoch: a fresh one each epoch stalls 1-5 s while
    # tf.data tears the old one down. Skipping the batches already trained on makes a
    # resumed run see the data in the order an uninterrupted one does.
    fit = functools.partial(model.fit, callbacks=callbacks, verbose=config.verbose, shuffle=False)
    if done and epoch < config.epochs:  # killed mid-epoch: finish that epoch first
        fit(batches_from(step), initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps_per_epoch - done)
        epoch, step = epoch + 1, (epoch + 1) * steps_per_epoch
    if epoch < config.epochs and checkpoints.nan_epoch is None:
        fit(batches_from(step), initial_epoch=epoch, epochs=config.epochs, steps_per_epoch=steps_per_epoch)
    if checkpoints.nan_epoch is not None:
        raise UsageError(
            f"the loss became NaN in epoch {checkpoints.nan_epoch + 1}; lower --learning_rate (or raise "
            f"--temperature) and rerun: it resumes from the last good checkpoint in {model_dir / 'checkpoints'}"
        )
    if not is_chief:
        return PretrainResult(model, {}, None, None, None, [])
    history = _read_history(model_dir / "history.csv")

    write_atomically(model_dir / MODEL_FILE, model.save)
    figures = [model_dir / "views.png", model_dir / "training_curves.png"]
    sample_images = next(iter(data.train.dataset.batch(8)))[0]
    plot_view_pairs(sample_images, model.augmenter, figures[0])
    plot_training_curves(history, figures[1])

    # The chief goes on alone with a copy of the encoder outside the strategy: under
    # multi_worker the trained one would wait for the other workers at every call.
    new_encoder = functools.partial(
        build_encoder, encoder_name(config, data.image_shape), data.image_shape, config.width
    )
    encoder = new_encoder()
    encoder.set_weights(model.encoder.get_weights())
    probe = random_probe = knn_top1 = None
    if data.test is not None and data.num_classes:
        train, test = (extract_features(encoder, split) for split in (data.train, data.test))
        probe = linear_probe(*train, *test, data.num_classes, seed=config.seed)
        knn_top1 = knn_accuracy(train, test, data.num_classes)
        keras.utils.set_random_seed(config.seed)
        random_probe = probe_encoder(new_encoder(), data.train, data.test, data.num_classes, seed=config.seed)

    card = {
        "encoder": encoder.name,
        "method": type(model).__name__,
        "dataset": data.name,
        "image_shape": data.image_shape,
        "inputs": "serving_default: uint8 images [B, H, W, C] in [0, 255]; serve_float: float32 in [0, 1]",
        "outputs": "representation: float32 [B, D], the encoder output h (the projection head is not exported)",
        "epochs_trained": len(next(iter(history.values()), [])),
        "final_loss": history.get("loss", [None])[-1],
        "linear_probe_top1": probe.top1_accuracy if probe else None,
        "knn_top1": knn_top1,
        "random_encoder_linear_probe_top1": random_probe.top1_accuracy if random_probe else None,
        "evaluation_protocol": "linear probe: L2 logistic regression on frozen, standardised h of the training split, "
        "scored on the test split; kNN: k=200, temperature 0.1, cosine similarity",
        "precision": precision,
        "jit_compile": jit_compile,
        "config": dataclasses.asdict(config),
        "caveats": "A SavedModel is code: load it only from sources you trust. An encoder trained in mixed "
        "precision computes in it.",
        **provenance(),
    }
    export_path = export_encoder(encoder, export_dir, data.image_shape, config.overwrite, card)
    return PretrainResult(model, history, export_path, probe, random_probe, figures, knn_top1)
